"""EDC's data plane signaling (JSON-LD), over real HTTP against a control-plane stand-in.

The real connector (EDC 0.15.1) plays the whole contract in tests/edc/test_signaling_connector.py; here the
paths it does not take in that run: bad and unauthenticated messages (4xx in the protocol's shape, nothing
stored), the asynchronous start (``provisioning: true``, our ``provisioned`` callback, the second start),
suspend and restart with a new token, terminate, and what EDC 0.15 actually sent (the captured start message).
"""

from __future__ import annotations

import copy
import hashlib
import json
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from devstack.servers import ThreadedServer
from provisioner.app import build_services, create_app
from provisioner.core import grants, lifecycle, store
from provisioner.core.identity import Identity, IdentitySource
from provisioner.core.store import GrantView, TransferRequest
from provisioner.infra.models import AuditEvent
from provisioner.infra.services import Services
from provisioner.infra.settings import ProvisionerSettings
from provisioner.infra.states import Protocol
from templates.names import API, tenant_id_for
from tests.provisioner.helpers import SIGNALING_KEY, db_grants, db_tenant, secret_data
from tests.provisioner.servers import EdcStub, wait_for
from tests.support.edc import cleanup, new_consumer

pytestmark = pytest.mark.stack

EDC = "https://w3id.org/edc/v0.0.1/ns/"
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "signaling" / "edc-0.15.1-start.json"


def start_message(process: str, consumer: str, callback: str, dataset: str = "dummy") -> dict[str, Any]:
    """The start message as EDC 0.15.1 sent it in a real run (ids replaced)."""
    body = copy.deepcopy(json.loads(FIXTURE.read_text()))
    body.update(processId=process, participantId=consumer, datasetId=dataset, callbackAddress=callback)
    return body


def flow_message(kind: str) -> dict[str, Any]:
    """A suspend or terminate as EDC 0.15.1 sends it: JSON-LD with the start's inline context (no reason)."""
    return {"@context": json.loads(FIXTURE.read_text())["@context"], "@type": kind}


def address_of(answer: dict[str, Any]) -> dict[str, str]:
    """The DSP v0.8 DataAddress of our answer, by property local name."""
    address = answer["dataAddress"]
    assert address["@type"] == "dspace:DataAddress"
    return {p["dspace:name"].removeprefix(EDC): p["dspace:value"] for p in address["dspace:endpointProperties"]}


def live_digests(svc: Services, tenant: str) -> set[str]:
    env = secret_data(svc, svc.settings.namespace_for(tenant), "wml-api-env")
    return set(env.get("WML_API_TOKEN_SHA256", "").split(",")) - {""}


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@pytest.fixture
def dataplane(
    make_settings: Callable[..., ProvisionerSettings], edc: tuple[EdcStub, str]
) -> Iterator[Callable[..., tuple[str, Services]]]:
    """Start a provisioner serving signaling with the given settings; yields (base URL of /signaling, services)."""
    running: list[tuple[ThreadedServer, Services]] = []

    def start(**overrides: Any) -> tuple[str, Services]:
        settings = make_settings(signaling_enabled=True, signaling_verify_with_management=False, **overrides)
        svc = build_services(settings)
        server = ThreadedServer(create_app(settings, services=svc)).__enter__()
        running.append((server, svc))
        return f"{server.url}/signaling/{SIGNALING_KEY}/dataflows", svc

    yield start
    for server, svc in running:
        server.__exit__(None, None, None)
        cleanup(svc)
        svc.close()


def test_bad_or_unauthenticated_messages_are_refused_and_change_nothing(
    dataplane: Callable[..., tuple[str, Services]], edc: tuple[EdcStub, str]
) -> None:
    base, svc = dataplane()
    _, edc_url = edc
    callback = f"{edc_url}/control"
    keyless = base.replace(f"/{SIGNALING_KEY}/", "/")
    good = start_message(str(uuid.uuid4()), new_consumer(), callback)
    refused = httpx.get(f"{keyless}/check")
    assert refused.status_code == 401 and refused.json()["@type"] == "DataFlowError"
    assert httpx.get(f"{base.replace(SIGNALING_KEY, 'wrong')}/check").status_code == 401
    assert httpx.get(f"{keyless}/check", headers={"x-api-key": SIGNALING_KEY}).status_code == 200
    assert httpx.post(f"{keyless}/start", json=good).status_code == 401
    cases: list[tuple[Any, int, str]] = [
        (b"{not json", 400, "malformed JSON"),
        ([good], 400, "JSON object"),
        ({k: v for k, v in good.items() if k != "processId"}, 400, "not a DataFlowStartMessage"),
        ({**good, "processId": "a\nb"}, 400, "not a DataFlowStartMessage"),
        ({**good, "callbackAddress": "http://169.254.169.254/latest"}, 403, "callbackAddress"),
        ({**good, "flowType": "PUSH"}, 400, "PULL"),
        ({**good, "datasetId": "no-such-asset"}, 404, "not offered"),
        ({**good, "sourceDataAddress": {"dspace:endpointType": "AmazonS3"}}, 400, "source type"),
    ]
    for body, status, reason in cases:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        answer = httpx.post(f"{base}/start", content=content, headers={"content-type": "application/json"})
        assert answer.status_code == status, (body, answer.text)
        assert answer.json()["@type"] == "DataFlowError" and reason in answer.json()["message"], answer.text
    assert httpx.post(f"{base}/nobody/terminate", json=flow_message("DataFlowTerminateMessage")).status_code == 404
    assert httpx.post(f"{base}/nobody/suspend", json=flow_message("DataFlowSuspendMessage")).status_code == 404
    assert db_grants(svc) == []


def test_messages_are_read_as_json_ld(dataplane: Callable[..., tuple[str, Services]], edc: tuple[EdcStub, str]) -> None:
    """Issue #30: a start is what its expanded JSON-LD says, not what its keys look like. Each of these got 200 and
    a tenant before; each is a 400 DataFlowError now, naming what is wrong, and makes nothing."""
    base, svc = dataplane()
    _, edc_url = edc
    good = start_message(str(uuid.uuid4()), new_consumer(), f"{edc_url}/control")
    context = good["@context"]
    variants = [
        # a foreign vocabulary: every key means something else than EDC's
        ({**good, "@context": {**context, "@vocab": "https://evil.example/ns/"}}, "not a DataFlowStartMessage"),
        # no context at all: no key is an EDC term
        ({k: v for k, v in good.items() if k != "@context"}, "not a DataFlowStartMessage"),
        # a terminate posted to /start
        ({**good, "@type": "DataFlowTerminateMessage"}, "DataFlowTerminateMessage"),
        # a remote context: never fetched
        ({**good, "@context": [f"{edc_url}/context.jsonld", context]}, "context"),
    ]
    for body, reason in variants:
        answer = httpx.post(f"{base}/start", json=body, timeout=30)
        assert answer.status_code == 400, (body, answer.text)
        assert answer.json()["@type"] == "DataFlowError" and reason in answer.json()["message"], answer.text
    assert db_grants(svc) == []


def test_a_huge_authenticated_body_is_refused_before_it_is_read(
    dataplane: Callable[..., tuple[str, Services]],
) -> None:
    """A 400 MiB body with the right key: 413 once the cap is passed, and the rest is never read."""
    base, _ = dataplane()
    url = httpx.URL(f"{base}/start")
    announced = 400 * 1024 * 1024
    head = (
        f"POST {url.raw_path.decode()} HTTP/1.1\r\nHost: {url.host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {announced}\r\nConnection: close\r\n\r\n"
    ).encode()
    sent = 0
    with socket.create_connection((url.host, url.port or 80), timeout=30) as sock:
        sock.sendall(head)
        sock.settimeout(0.2)
        chunk = b" " * 65536
        try:
            while sent < announced:
                try:
                    sock.sendall(chunk)
                except TimeoutError:  # the server stopped reading: its answer is waiting
                    break
                sent += len(chunk)
                try:
                    if sock.recv(1, socket.MSG_PEEK):
                        break
                except TimeoutError:
                    continue
        except (BrokenPipeError, ConnectionResetError):
            pass
        sock.settimeout(30)
        answer = sock.recv(65536)
    assert answer.split(b"\r\n", 1)[0].split()[1] == b"413", answer[:300]
    assert b"DataFlowError" in answer
    assert sent < 64 * 1024 * 1024, f"{sent} bytes were taken before the answer"


def test_async_start_suspend_restart_and_terminate(
    dataplane: Callable[..., tuple[str, Services]], edc: tuple[EdcStub, str]
) -> None:
    stub, edc_url = edc
    base, svc = dataplane(signaling_start_wait_seconds=0.0)
    process, consumer = str(uuid.uuid4()), new_consumer()
    tenant = tenant_id_for(consumer)
    message = start_message(process, consumer, f"{edc_url}/control")

    # not ready at once: "provisioning", then our `provisioned` callback (no token in it)
    first = httpx.post(f"{base}/start", json=message, timeout=30)
    assert first.status_code == 200 and first.json()["provisioning"] is True, first.text
    [call] = wait_for(lambda: stub.signals("provisioned", process), 90, what="the provisioned callback")
    assert call.path == f"/control/transferprocess/{process}/provisioned"
    assert call.body["properties"][f"{EDC}endpoint"] == svc.settings.api_url_for(tenant)
    assert "authorization" not in json.dumps(call.body)

    # EDC starts again: now the answer carries the endpoint and the flow's token; again: the same token
    again = httpx.post(f"{base}/start", json=message, timeout=30).json()
    assert again["provisioning"] is False and again["@type"] == "DataFlowResponseMessage"
    props = address_of(again)
    assert props["endpoint"] == svc.settings.api_url_for(tenant) and props["authType"] == "bearer"
    token = props["authorization"]
    assert address_of(httpx.post(f"{base}/start", json=message, timeout=30).json())["authorization"] == token
    assert sha(token) in live_digests(svc, tenant)
    assert len(stub.signals("provisioned", process)) == 1

    # suspend: the token stops working, the tenant stays
    assert httpx.post(f"{base}/{process}/suspend", json=flow_message("DataFlowSuspendMessage")).status_code == 204
    wait_for(lambda: sha(token) not in live_digests(svc, tenant), 60, what="the token revoked")
    wait_for(lambda: db_tenant(svc, tenant).state == "ready", 60, what="the tenant ready, without the token")
    # a new start of the same process: a new token, the old one stays dead
    restarted = httpx.post(f"{base}/start", json=message, timeout=60).json()
    fresh = address_of(restarted)["authorization"] if not restarted["provisioning"] else None
    if fresh is None:  # slow node: delivered by callback, then the start answers
        wait_for(lambda: len(stub.signals("provisioned", process)) == 2, 90, what="the second callback")
        fresh = address_of(httpx.post(f"{base}/start", json=message, timeout=30).json())["authorization"]
    assert fresh != token and live_digests(svc, tenant) == {sha(fresh)}

    # terminate (EDC sends no reason): the last flow ends, so does the tenant
    assert httpx.post(f"{base}/{process}/terminate", json=flow_message("DataFlowTerminateMessage")).status_code == 204
    wait_for(lambda: db_tenant(svc, tenant).state == "deleted", 120, what="the tenant deleted")
    assert svc.kube.get("v1", "Namespace", svc.settings.namespace_for(tenant)) is None
    [grant] = db_grants(svc, tenant)
    assert (grant.state, grant.ended_by) == ("deprovisioned", "terminate")
    # a terminated flow is not restarted by a late start
    late = httpx.post(f"{base}/start", json=message, timeout=30)
    assert late.status_code == 409 and "terminated" in late.json()["message"]


def test_registration_is_json_ld_with_the_key_in_the_url_and_repeated_when_forgotten(
    dataplane: Callable[..., tuple[str, Services]], edc: tuple[EdcStub, str]
) -> None:
    stub, _ = edc
    dataplane(
        signaling_self_url="http://dataplane.example:8000",
        signaling_control_key="ck",
        signaling_register_interval_seconds=0.5,
    )
    path, body, headers = wait_for(lambda: stub.registrations, 30, what="the registration")[0]
    assert path == "/control/v1/dataplanes" and headers.get("x-api-key") == "ck"
    assert body["@context"] == {"@vocab": EDC} and body["@id"] == "workflow-middlelayer"
    assert body["url"] == f"http://dataplane.example:8000/signaling/{SIGNALING_KEY}/dataflows"
    assert body["allowedTransferTypes"] == ["HttpData-PULL"] and body["allowedSourceTypes"] == ["WorkflowMiddleLayer"]
    # not again while it knows us (EDC would mark us REGISTERED, not AVAILABLE, until its next check) …
    time.sleep(2)
    assert len(stub.registrations) == 1
    # … but as soon as it forgot us (a restart with in-memory stores)
    with stub.lock:
        stub.registrations.clear()
    wait_for(lambda: stub.registrations, 30, what="the registration after the control plane forgot us")


def settle(svc: Services, tenant: str, force: bool = False) -> None:
    """Run the tenant as the scheduler does (re-queued while it waits) until it wants nothing more."""
    for _ in range(240):
        again = lifecycle.run_tenant(svc, tenant, force=force, due=True)
        if again is None:
            return
        time.sleep(again)
    raise AssertionError("the tenant kept asking to be run again")


def accept(svc: Services, request: TransferRequest, who: Identity) -> GrantView:
    """What a start stores once its consumer is known (the asset id is its name)."""
    return store.accept_provision(svc.sessions, svc.settings, request, request.asset_id, svc.clock(), who)


def test_a_suspend_during_a_run_is_applied_by_the_next(services: Services, edc: tuple[EdcStub, str]) -> None:
    """A suspend that lands while a run applies another grant must not be lost: that run leaves the tenant
    pending and the next one revokes the token (the run settles only what it applied)."""
    _, edc_url = edc
    consumer = new_consumer()
    tenant = tenant_id_for(consumer)
    who = Identity(consumer, None, IdentitySource.SIGNALING)
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    grant = accept(services, grants.flow_request(Protocol.SIGNALING, first, "dummy", f"{edc_url}/control"), who)
    settle(services, tenant, force=True)
    token = secret_data(services, services.settings.namespace_for(tenant), f"wml-grant-{grant.grant_id}")["token"]
    assert sha(token) in live_digests(services, tenant)

    accept(services, grants.flow_request(Protocol.SIGNALING, second, "input-dummy", f"{edc_url}/control"), who)

    fired: list[str] = []

    def suspend_midway(step: str) -> None:
        if step == "ready" and not fired:
            fired.append(step)
            store.suspend(services.sessions, Protocol.SIGNALING, first)

    services.step_hook = suspend_midway
    for _ in range(120):  # until the run reaches `ready` (the API first answers the new grant's token)
        again = lifecycle.run_tenant(services, tenant, due=True)
        if fired:
            break
        time.sleep(again or 0.5)
    assert fired and again == 0.0  # changed under it: run again at once
    assert db_tenant(services, tenant).state == "pending"
    services.step_hook = lambda _: None
    settle(services, tenant)
    assert db_tenant(services, tenant).state == "ready"
    assert sha(token) not in live_digests(services, tenant)
    states = {g.transfer_process_id: g.state for g in db_grants(services, tenant)}
    assert states == {first: "suspended", second: "callback"}  # the second is ready, its answer due


def test_an_api_that_cannot_start_is_retried_then_failed_never_handed_out(
    dataplane: Callable[..., tuple[str, Services]], edc: tuple[EdcStub, str]
) -> None:
    """Ready means working: an API pod that no node can take (it asks for 64 CPUs) is never handed out; the
    attempts are counted, then the tenant fails and EDC hears ``fail`` (no ``provisioned``, no token)."""
    stub, edc_url = edc
    base, svc = dataplane(
        signaling_start_wait_seconds=0.0,
        api_requests_cpu="64",
        api_limits_cpu="64",
        quota_cpu="200",  # the quota lets the pods be made; no node can take them
        api_start_timeout_seconds=5,
        work_max_attempts=2,
    )
    process, consumer = str(uuid.uuid4()), new_consumer()
    tenant = tenant_id_for(consumer)
    message = start_message(process, consumer, f"{edc_url}/control")
    first = httpx.post(f"{base}/start", json=message, timeout=30)
    assert first.status_code == 200 and first.json()["provisioning"] is True, first.text
    [call] = wait_for(lambda: stub.signals("fail", process), 180, what="the fail callback")
    assert "(answers)" in call.body["errorMessage"], call.body  # the step, not the cluster's internals
    assert stub.signals("provisioned", process) == []
    row = db_tenant(svc, tenant)
    assert row.state == "failed" and row.attempts == 2, (row.state, row.attempts, row.error)
    assert "did not start within 5s" in (row.error or "") and "Insufficient cpu" in (row.error or ""), row.error
    # a start of the failed flow is refused in the protocol's shape, with no endpoint in it
    again = httpx.post(f"{base}/start", json=message, timeout=30)
    assert again.status_code >= 400 and again.json()["@type"] == "DataFlowError", again.text
    assert "authorization" not in again.text


def test_an_api_that_is_only_slow_is_waited_for_without_spending_attempts(
    dataplane: Callable[..., tuple[str, Services]], edc: tuple[EdcStub, str]
) -> None:
    """A busy node makes pods slow, not broken: an API that needs 15 s to serve, with a 5 s progress deadline and
    2 attempts, is past its deadline with no failure named; it is waited for and handed out, no attempt spent."""
    stub, edc_url = edc
    base, svc = dataplane(
        signaling_start_wait_seconds=0.0,
        api_command=["/bin/sh", "-c", "sleep 15 && exec workflow-api-server --host 0.0.0.0 --port 8080"],
        api_start_timeout_seconds=5,
        work_max_attempts=2,
    )
    process, consumer = str(uuid.uuid4()), new_consumer()
    tenant = tenant_id_for(consumer)
    first = httpx.post(f"{base}/start", json=start_message(process, consumer, f"{edc_url}/control"), timeout=30)
    assert first.status_code == 200 and first.json()["provisioning"] is True, first.text
    # the deadline passes while the pod sleeps: Kubernetes says so, and nothing is handed out meanwhile
    wait_for(lambda: _deadline_exceeded(svc, tenant), 60, what="the progress deadline to pass")
    # the slow path really ran: the tenant says it waits for a slow start, and nothing is handed out meanwhile
    wait_for(lambda: "starting slowly" in _error(svc, tenant), 30, what="the slow-start wait")
    assert stub.signals("provisioned", process) == [] and stub.signals("fail", process) == []
    [call] = wait_for(lambda: stub.signals("provisioned", process), 120, what="the provisioned callback")
    assert stub.signals("fail", process) == []
    row = db_tenant(svc, tenant)
    assert row is not None and row.state == "ready", (row and row.state, row and row.error)
    with svc.sessions() as session:  # no attempt was spent on it
        failed = session.scalars(
            select(AuditEvent).where(AuditEvent.tenant_id == tenant, AuditEvent.event == "step_failed")
        ).all()
    assert failed == [], [e.detail for e in failed]
    assert call.body["properties"][f"{EDC}endpoint"] == svc.settings.api_url_for(tenant)
    # what is handed out works
    props = address_of(httpx.post(f"{base}/start", json=start_message(process, consumer, f"{edc_url}/control")).json())
    answer = httpx.get(
        f"{props['endpoint']}openapi.json", headers={"Authorization": f"Bearer {props['authorization']}"}
    )
    assert answer.status_code == 200, answer.text


def _error(svc: Services, tenant: str) -> str:
    row = db_tenant(svc, tenant)
    return (row.error if row else None) or ""


def _deadline_exceeded(svc: Services, tenant: str) -> bool:
    deployment = svc.kube.get("apps/v1", "Deployment", API, svc.settings.namespace_for(tenant)) or {}
    conditions = (deployment.get("status") or {}).get("conditions") or []
    return any(c.get("reason") == "ProgressDeadlineExceeded" for c in conditions)
