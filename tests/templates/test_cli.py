from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from tests.support.examples import EXAMPLES


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "templates.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_validate_reports_every_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: ../x\nworker: {image: 'x', bogus: 1}\n")
    result = _cli("validate", str(EXAMPLES / "dummy.yaml"), str(bad))
    assert result.returncode == 1
    assert "dummy.yaml: dummy" in result.stderr
    assert f"{bad}: name:" in result.stderr and f"{bad}: worker.bogus: unknown field" in result.stderr
    assert "Traceback" not in result.stderr


def test_compile_yaml_and_json() -> None:
    out = _cli("compile", str(EXAMPLES / "dummy.yaml"), "--namespace", "ns1")
    assert out.returncode == 0, out.stderr
    manifest = yaml.safe_load(out.stdout)
    assert manifest["kind"] == "WorkflowTemplate" and manifest["metadata"]["namespace"] == "ns1"
    out = _cli("compile", str(EXAMPLES / "legacy" / "dummy.json"), "-o", "json")
    assert json.loads(out.stdout)["metadata"]["name"] == "wml-dummy"


def test_schema() -> None:
    schema = json.loads(_cli("schema").stdout)
    assert "worker" in schema["properties"] and schema["additionalProperties"] is False
