"""Every provisioner route refuses a body over ``request_max_bytes`` with 413, in its protocol's error shape, before
more than the cap is read (declared by Content-Length or streamed); DPS reports a completed flow as COMPLETED.

The app runs in-process without the stack: the refusals come before any backend is asked."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from starlette.types import Receive, Scope, Send

from provisioner.app import create_app
from provisioner.infra.settings import ProvisionerSettings
from provisioner.infra.states import EndedBy, GrantState
from provisioner.protocols.dps.routes import flow_state
from provisioner.protocols.dps.wire import FlowState
from provisioner.web.limits import BodyLimit

CAP = 4096
KEY = "k" * 32
# A kubeconfig naming an address nothing listens on: the client loads, no route here reaches it.
KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:9"}}]
users: [{name: u, user: {token: x}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"""


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    kubeconfig = tmp_path_factory.mktemp("kube") / "config"
    kubeconfig.write_text(KUBECONFIG)
    settings = ProvisionerSettings(
        database_url="sqlite://",
        kubeconfig=Path(kubeconfig),
        reconciler_enabled=False,
        signaling_enabled=True,
        dps_enabled=True,
        edc_inbound_key=SecretStr(KEY),
        signaling_inbound_key=SecretStr(KEY),
        admin_token=SecretStr(KEY),
        request_max_bytes=CAP,
    )
    with TestClient(create_app(settings)) as c:
        yield c


ROUTES = [
    ("/edc/provision", {"x-api-key": KEY}, "detail"),
    (f"/signaling/{KEY}/dataflows/start", {}, "message"),
    ("/dps/dataflows/start", {}, "error"),
    ("/admin/tenants", {"Authorization": f"Bearer {KEY}"}, "detail"),
]


@pytest.mark.parametrize("path,headers,field", ROUTES)
def test_a_declared_oversize_body_is_refused_at_once(
    client: TestClient, path: str, headers: dict[str, str], field: str
) -> None:
    response = client.post(
        path, content=b"{" + b" " * CAP + b"}", headers={**headers, "content-type": "application/json"}
    )
    assert response.status_code == 413, response.text
    assert str(CAP) in response.text
    assert field in response.json() or field == "errors"  # each protocol's own error shape


def test_a_streamed_oversize_body_is_refused_after_the_cap(client: TestClient) -> None:
    """Chunked, with no length declared: the route reads until the cap is passed, then 413 (through the HTTP stack)."""

    def chunks() -> Iterator[bytes]:
        for _ in range(64):
            yield b" " * 1024

    response = client.post("/edc/provision", content=chunks(), headers={"x-api-key": KEY})
    assert response.status_code == 413, response.text


def test_the_cap_stops_reading_a_stream() -> None:
    """At the ASGI level, where reading can be counted: no more than the cap and one chunk is taken from the server."""
    received: list[int] = []
    sent: list[dict[str, Any]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        while True:  # a handler reading its whole body, as request.body() does
            message = await receive()
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"read it all"})

    async def receive() -> dict[str, Any]:
        received.append(1024)
        return {"type": "http.request", "body": b" " * 1024, "more_body": len(received) < 1000}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    limit = BodyLimit(app, CAP, lambda path, reason: {"path": path, "detail": reason})
    scope = {"type": "http", "path": "/dps/dataflows/start", "headers": []}
    asyncio.run(limit(scope, receive, send))  # type: ignore[arg-type]
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"])["path"] == "/dps/dataflows/start"
    assert sum(received) <= CAP + 1024


def test_a_small_body_still_reaches_its_route(client: TestClient) -> None:
    response = client.post("/edc/provision", json={}, headers={"x-api-key": KEY})
    assert response.status_code == 400, response.text  # validated, not refused for its size


def test_dps_flow_states_as_the_specification_defines_them() -> None:
    assert flow_state(GrantState.DEPROVISIONED, EndedBy.COMPLETED) is FlowState.COMPLETED
    assert flow_state(GrantState.DEPROVISIONING, EndedBy.COMPLETED) is FlowState.COMPLETED
    assert flow_state(GrantState.DEPROVISIONED, EndedBy.TERMINATE) is FlowState.TERMINATED
    assert flow_state(GrantState.FAILED, None) is FlowState.TERMINATED
    assert flow_state(GrantState.PROVISIONED, None) is FlowState.STARTED
