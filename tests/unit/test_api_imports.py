"""A tenant API process loads neither Hera nor the Kubernetes client: every new consumer waits for its API pod to
start, and those two cost about a second and tens of MiB of it (tenant API pods read Argo's answers into
``api.workflow`` and talk to Kubernetes over httpx)."""

from __future__ import annotations

import json
import subprocess
import sys


def test_serving_the_api_imports_neither_hera_nor_kubernetes() -> None:
    code = (
        "import json, sys\n"
        "import uvicorn\n"
        "from api import observability\n"
        "from api.app import create_app\n"
        "from api.cli import app\n"
        "from api.settings import ApiSettings\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('hera', 'kubernetes'))))\n"
    )
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True).stdout)
    assert loaded == []


def test_the_compiler_is_still_there_when_asked_for() -> None:
    import templates

    assert templates.compile_asset.__module__ == "templates.compiler"
