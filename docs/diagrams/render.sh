#!/usr/bin/env bash
# Renders the PlantUML sources here to SVG and PNG (PlantUML from Maven Central; Graphviz from Debian).
set -euo pipefail
cd "$(dirname "$0")"
v=1.2024.7
jar="$HOME/.m2/repository/net/sourceforge/plantuml/plantuml/$v/plantuml-$v.jar"
[ -f "$jar" ] || mvn -q dependency:get -Dartifact="net.sourceforge.plantuml:plantuml:$v"
command -v dot >/dev/null || apt-get install -y -qq graphviz
java -Djava.awt.headless=true -jar "$jar" -tsvg ./*.puml
java -Djava.awt.headless=true -jar "$jar" -tpng ./*.puml
