"""A tenant API process loads neither Hera, the Kubernetes client, botocore/s3fs nor the consumer CLI's libraries:
every new consumer waits for its API pod to start, and every idle tenant keeps its memory (tenant API pods read
Argo's answers into ``api.core.workflow``, talk to Kubernetes over httpx and to S3 through MinIO's SDK)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

from devstack.servers import free_port

# click stays: uvicorn itself imports it.
HEAVY = ("hera", "kubernetes", "botocore", "aiobotocore", "s3fs", "rich", "typer", "pygments")


def test_the_served_api_loads_none_of_the_heavy_libraries() -> None:
    # The real entry point up to the moment it would serve: uvicorn.Server.run reports what the process has loaded.
    code = (
        "import json, sys, uvicorn\n"
        f"heavy = {HEAVY!r}\n"
        "def report(server, sockets=None):\n"
        "    print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in heavy)))\n"
        "    server.started = True\n"
        "uvicorn.Server.run = report\n"
        "from api.server import main\n"
        "main(['--port', '0'])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, env=ENV, text=True)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


ENV = os.environ | {
    "WML_API_TENANT": "t-1",
    "WML_API_NAMESPACE": "wml-t-1",
    "WML_API_TOKEN_SHA256": "0" * 64,
    "WML_API_S3_ENDPOINT_URL": "http://127.0.0.1:9",
    "WML_API_S3_ACCESS_KEY": "k",
    "WML_API_S3_SECRET_KEY": "s",
    "WML_API_S3_PREFIX": "tenants/t-1",
    "WML_API_ARGO_SERVER_URL": "http://127.0.0.1:9",
}


def test_a_connection_made_while_the_api_starts_is_answered_once_it_serves() -> None:
    # Kubernetes' readiness probe connects once a second: the port is open before the application is imported,
    # so an early probe waits in the backlog and is answered, instead of being refused and retried a second later.
    port = free_port()
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "api.server", "--port", str(port)],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = started + 20
        while True:
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=20)
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline, "the port never opened"
                time.sleep(0.005)
        connected = time.monotonic()
        with conn:
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := conn.recv(65536):
                answer += chunk
        answered = time.monotonic()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    # The import takes most of a start; the connection was open long before the answer came.
    assert answered - connected > (answered - started) / 3, (connected - started, answered - started)


def test_the_compiler_is_still_there_when_asked_for() -> None:
    import templates

    assert templates.compile_asset.__module__ == "templates.compiler"
