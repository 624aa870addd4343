"""A tenant API process loads neither Hera, the Kubernetes client, botocore/s3fs nor the consumer CLI's libraries:
every new consumer waits for its API pod to start, and every idle tenant keeps its memory (tenant API pods read
Argo's answers into ``api.workflow``, talk to Kubernetes over httpx and to S3 through MinIO's SDK)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

# click stays: uvicorn itself imports it.
HEAVY = ("hera", "kubernetes", "botocore", "aiobotocore", "s3fs", "rich", "typer", "pygments")


def test_the_served_api_loads_none_of_the_heavy_libraries() -> None:
    # The real entry point up to the moment it would listen: uvicorn.run reports what the process has loaded.
    code = (
        "import json, sys, uvicorn\n"
        f"heavy = {HEAVY!r}\n"
        "def report(app, **kwargs):\n"
        "    print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in heavy)))\n"
        "uvicorn.run = report\n"
        "from api.server import main\n"
        "main(['--port', '0'])\n"
    )
    env = os.environ | {
        "WML_API_TENANT": "t-1",
        "WML_API_NAMESPACE": "wml-t-1",
        "WML_API_TOKEN_SHA256": "0" * 64,
        "WML_API_S3_ENDPOINT_URL": "http://127.0.0.1:9",
        "WML_API_S3_ACCESS_KEY": "k",
        "WML_API_S3_SECRET_KEY": "s",
        "WML_API_S3_PREFIX": "tenants/t-1",
        "WML_API_ARGO_SERVER_URL": "http://127.0.0.1:9",
    }
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, env=env, text=True)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_the_compiler_is_still_there_when_asked_for() -> None:
    import templates

    assert templates.compile_asset.__module__ == "templates.compiler"
