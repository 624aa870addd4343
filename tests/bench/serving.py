"""A tenant API run as its Deployment runs it (``python -m api.server`` with the tenant's settings in its
environment), for the benches that watch its process."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx

from devstack.servers import free_port


def serve_process(settings_env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "api.server", "--port", str(port)],
        env={**os.environ, **settings_env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("API process did not start")


def env_of(settings: object) -> dict[str, str]:
    env = {}
    for name, value in settings.model_dump().items():  # type: ignore[attr-defined]
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env[f"WML_API_{name.upper()}"] = str(value)
    return env
