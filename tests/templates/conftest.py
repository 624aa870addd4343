from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.examples import EXAMPLE_FILES, EXAMPLES, OPTIONS, ROOT, TARGET  # noqa: F401


def _strict(node: Any) -> Any:
    """Reject unknown properties everywhere the schema lists the known ones."""
    if isinstance(node, dict):
        if "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for value in node.values():
            _strict(value)
    elif isinstance(node, list):
        for value in node:
            _strict(value)
    return node


@pytest.fixture(scope="session")
def argo_schema() -> dict[str, Any]:
    """Argo's published JSON schema for the pinned version, from its Go module (never committed)."""
    out = subprocess.run(
        [str(ROOT / "devstack" / "stack" / "build.sh"), "paths"], check=True, capture_output=True, text=True
    ).stdout
    src = next(line.split("=", 1)[1] for line in out.splitlines() if line.startswith("ARGO_SRC="))
    schema = json.loads((Path(src) / "api" / "jsonschema" / "schema.json").read_text())
    return _strict(schema)
