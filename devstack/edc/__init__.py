"""Real EDC connectors assembled by Maven from Maven Central, launched as local processes."""
