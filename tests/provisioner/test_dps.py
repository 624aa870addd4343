"""Eclipse Data Plane Signaling (DPS, EDC >= 0.18) against the spec's own schemas and examples.

No connector of 0.16+ is served by the registries here, so the control plane is a stand-in (tests/provisioner/
servers.py) and the contract is the specification: the JSON schemas and examples of releases v1.0-RC2 (EDC 0.18)
and v1.0-RC3 (EDC main), copied verbatim into fixtures/dps/ (see its SOURCE.md). Every message we send is
validated against the schema of its release; the spec's example start messages are what we are sent.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import jwt
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from referencing import Registry, Resource

from devstack.servers import ThreadedServer, free_port
from provisioner.app import build_services, create_app
from provisioner.core.scheduler import Scheduler
from provisioner.infra.services import Services
from provisioner.infra.settings import ProvisionerSettings
from templates.names import tenant_id_for
from tests.provisioner.helpers import SIGNALING_KEY, db_grants, db_tenant, secret_data
from tests.provisioner.servers import EdcStub, wait_for
from tests.support.edc import cleanup, new_consumer

pytestmark = pytest.mark.stack

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "dps"
SIG = "https://w3id.org/dspace-sig/v1.0/"
DSP = "https://w3id.org/dspace/2025/1/"
RELEASES = ("rc2", "rc3")


def registry(release: str) -> Registry:
    """The release's schemas under the URLs they reference each other by (fixtures/dps/SOURCE.md)."""
    resources = []
    for path in (FIXTURES / release).glob("*.schema.json"):
        resources.append((SIG + path.name, Resource.from_contents(json.loads(path.read_text()))))
    for path in (FIXTURES / "dsp-2025-1").rglob("*.json"):
        url = DSP + str(path.relative_to(FIXTURES / "dsp-2025-1"))
        resources.append((url, Resource.from_contents(json.loads(path.read_text()))))
    http = FIXTURES / release / "profiles" / "schemas" / "http" / "data-address-schema.json"
    if http.exists():
        resources.append(
            (
                "https://w3id.org/dspace-sig/profile/http/data-address-schema.json",
                Resource.from_contents(json.loads(http.read_text())),
            )
        )
    return Registry().with_resources(resources)


def validate(release: str, name: str, message: dict[str, Any]) -> None:
    schema = json.loads((FIXTURES / release / f"{name}.schema.json").read_text())
    jsonschema.Draft7Validator(schema, registry=registry(release)).validate(message)


def example(release: str, name: str) -> dict[str, Any]:
    return copy.deepcopy(json.loads((FIXTURES / release / "examples" / f"{name}.json").read_text()))


def start_of(release: str, process: str, consumer: str, dataset: str = "dummy") -> dict[str, Any]:
    """The spec's example start message for a PULL (no DataAddress: the data plane makes one), our ids."""
    body = example(release, "DataFlowStartMessage")
    body.pop("dataAddress")
    body.update(processId=process, counterPartyId=consumer, datasetId=dataset, messageId=str(uuid.uuid4()))
    if release == "rc2":
        body["transferType"] = "HttpData-PULL"
        body.pop("callbackAddress")  # RC2's schema leaves it optional; EDC 0.18 sends one (tested below)
    return body


def token_of(status: dict[str, Any]) -> str:
    props = {p["name"]: p["value"] for p in status["dataAddress"]["endpointProperties"]}
    assert props["authType"] == "bearer"
    return props["authorization"]


def live_digests(svc: Services, tenant: str) -> set[str]:
    env = secret_data(svc, svc.settings.namespace_for(tenant), "wml-api-env")
    return set(env.get("WML_API_TOKEN_SHA256", "").split(",")) - {""}


@pytest.fixture
def dataplane(
    make_settings: Callable[..., ProvisionerSettings],
) -> Iterator[Callable[..., tuple[str, Services]]]:
    running: list[tuple[ThreadedServer, Services]] = []

    def start(**overrides: Any) -> tuple[str, Services]:
        values = {"dps_enabled": True, "signaling_verify_with_management": False, **overrides}
        settings = make_settings(**values)
        svc = build_services(settings)
        server = ThreadedServer(create_app(settings, services=svc)).__enter__()
        running.append((server, svc))
        return f"{server.url}/dps/dataflows", svc

    yield start
    for server, svc in running:
        server.__exit__(None, None, None)
        cleanup(svc)
        svc.close()


KEY = {"x-api-key": SIGNALING_KEY}


def test_spec_examples_parse_and_schemas_hold() -> None:
    """The fixtures are the spec's; our parser takes both releases' start examples (a PULL start's DataAddress
    aside), and what we would answer validates against each release's schema."""
    from provisioner.protocols.dps import wire as dps

    for release in RELEASES:
        message = dps.StartMessage.model_validate(example(release, "DataFlowStartMessage"))
        assert message.counter_party_id == "consumer-participant-id" and message.process_id
        assert message.kind == ("com.test.http-PULL" if release == "rc2" else dps.RC3_HTTP_PULL)
        validate(release, "DataFlowSuspendMessage", example(release, "DataFlowSuspendMessage"))
        kind = message.kind
        address = dps.data_address("https://tenant.example/api/", "t0ken", dps.endpoint_type(kind))
        validate(release, "DataFlowStatusMessage", dps.status("m", "f", dps.FlowState.STARTED, address))
        validate(release, "DataFlowStatusResponseMessage", dps.status_response("f", dps.FlowState.STARTED))
    rc3_address = dps.data_address("https://tenant.example/api/", "t0ken", dps.RC3_HTTP_PULL)
    http_profile = json.loads((FIXTURES / "rc3/profiles/schemas/http/data-address-schema.json").read_text())
    jsonschema.Draft7Validator(http_profile, registry=registry("rc3")).validate(rc3_address)
    with pytest.raises(jsonschema.ValidationError):  # the schemas do bite
        validate("rc2", "DataFlowStatusMessage", {"dataFlowId": "f", "state": "STARTED"})


@pytest.mark.parametrize("release", RELEASES)
def test_start_suspend_resume_terminate(
    release: str, dataplane: Callable[..., tuple[str, Services]], edc: tuple[EdcStub, str]
) -> None:
    base, svc = dataplane()
    process, consumer = str(uuid.uuid4()), new_consumer()
    tenant = tenant_id_for(consumer)
    start = start_of(release, process, consumer)
    validate(release, "DataFlowStartMessage", start)

    answer = httpx.post(f"{base}/start", json=start, headers=KEY, timeout=60)
    assert answer.status_code in (200, 202), answer.text
    status = answer.json()
    validate(release, "DataFlowStatusMessage", status)
    assert status["dataFlowId"] == process and status["messageId"] == start["messageId"]
    if answer.status_code == 202:  # a slow node: STARTING, then our `started` callback
        assert status["state"] == "STARTING" and answer.headers["location"].endswith(f"/{process}/status")
        stub, _ = edc
        status = wait_for(lambda: stub.signals("started", process), 90, what="started")[0].body
        validate(release, "DataFlowStatusMessage", status)
    assert status["state"] == "STARTED"
    assert status["dataAddress"]["endpoint"] == svc.settings.api_url_for(tenant)
    token = token_of(status)
    assert live_digests(svc, tenant) == {hashlib.sha256(token.encode()).hexdigest()}
    # a second start of the same process is a client error (the spec's rule), and changes nothing
    again = httpx.post(f"{base}/start", json={**start, "messageId": "m2"}, headers=KEY, timeout=30)
    assert again.status_code == 409 and "exists already" in again.json()["error"]
    assert len(db_grants(svc, tenant)) == 1

    flow = f"{base}/{process}"
    suspend = example(release, "DataFlowSuspendMessage")
    assert httpx.post(f"{flow}/suspend", json=suspend, headers=KEY).status_code == 200
    assert httpx.get(f"{flow}/status", headers=KEY).json() == {"dataFlowId": process, "state": "SUSPENDED"}
    wait_for(lambda: live_digests(svc, tenant) == set(), 60, what="the token revoked")
    resumed = httpx.post(f"{flow}/resume", json={"messageId": "m3"}, headers=KEY, timeout=60)
    assert resumed.status_code in (200, 202), resumed.text
    if resumed.status_code == 200:
        validate(release, "DataFlowStatusMessage", resumed.json())
        fresh = token_of(resumed.json())
        assert fresh != token and live_digests(svc, tenant) == {hashlib.sha256(fresh.encode()).hexdigest()}

    terminate = example(release, "DataFlowTerminateMessage")
    assert httpx.post(f"{flow}/terminate", json=terminate, headers=KEY).status_code == 200
    wait_for(lambda: db_tenant(svc, tenant).state == "deleted", 120, what="the tenant deleted")
    assert httpx.get(f"{flow}/status", headers=KEY).json()["state"] == "TERMINATED"
    assert httpx.post(f"{base}/nobody/completed", headers=KEY).status_code == 404


def test_bad_messages_are_4xx_and_create_nothing(
    dataplane: Callable[..., tuple[str, Services]], edc: tuple[EdcStub, str]
) -> None:
    base, svc = dataplane()
    _, edc_url = edc
    good = start_of("rc3", str(uuid.uuid4()), new_consumer())
    refused = httpx.post(f"{base}/start", json=good)
    assert refused.status_code == 401 and "shared key" in refused.json()["error"]
    assert httpx.post(f"{base}/start", json=good, headers={"x-api-key": "wrong"}).status_code == 401
    cases: list[tuple[Any, int, str]] = [
        (b"[", 400, "malformed JSON"),
        ({k: v for k, v in good.items() if k != "processId"}, 400, "not a DataFlowStartMessage"),
        ({k: v for k, v in good.items() if k != "profile"}, 400, "not a DataFlowStartMessage"),
        ({**good, "profile": "https://w3id.org/dspace-sig/profile/http-push"}, 400, "not served"),
        ({**good, "dataAddress": example("rc3", "DataAddress")}, 400, "carries no DataAddress"),
        ({**good, "callbackAddress": "http://10.0.0.1/steal"}, 403, "callbackAddress"),
        ({**good, "datasetId": "no-such-asset"}, 404, "not offered"),
    ]
    for body, code, reason in cases:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        answer = httpx.post(f"{base}/start", content=content, headers={**KEY, "content-type": "application/json"})
        assert answer.status_code == code and reason in answer.json()["error"], (body, answer.text)
    assert httpx.post(f"{base}/prepare", json=example("rc3", "DataFlowPrepareMessage"), headers=KEY).status_code == 400
    for action in ("suspend", "resume", "terminate", "completed"):
        assert httpx.post(f"{base}/nobody/{action}", json={}, headers=KEY).status_code == 404
    assert db_grants(svc) == []
    # RC2 with EDC 0.18's callbackAddress: the configured control plane is accepted
    rc2 = {**start_of("rc2", str(uuid.uuid4()), new_consumer()), "callbackAddress": f"{edc_url}/dps"}
    assert httpx.post(f"{base}/start", json=rc2, headers=KEY, timeout=60).status_code in (200, 202)


def _keypair() -> tuple[str, dict[str, Any], Any]:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    return pem, {"keys": [{**jwk, "kid": "cp-1", "use": "sig", "alg": "ES256"}]}, key


def test_oauth2_profile_both_ways(dataplane: Callable[..., tuple[str, Services]], edc: tuple[EdcStub, str]) -> None:
    """Incoming: only a JWT the control plane signed for us. Outgoing: our callbacks and registration carry a JWT
    with sub = our data plane id, verifiable with the JWKS we registered."""
    stub, edc_url = edc
    ours, _, _ = _keypair()
    _, theirs_jwks, theirs = _keypair()
    _, _, stranger = _keypair()
    base, svc = dataplane(
        dps_oauth2_private_key=ours,
        dps_control_plane_jwks=json.dumps(theirs_jwks),
        dps_control_plane_id="edc-control-plane",
        dps_registration_url=f"{edc_url}/management/v4/dataplanes",
        signaling_self_url="https://dataplane.example",
        signaling_register_interval_seconds=0.5,
        signaling_start_wait_seconds=0.0,
    )

    def bearer(key: Any, **claims: Any) -> dict[str, str]:
        now = int(time.time())
        body = {
            "iss": "edc-control-plane",
            "sub": "edc-control-plane",
            "aud": "workflow-middlelayer",
            "iat": now,
            "exp": now + 60,
            **claims,
        }
        return {"Authorization": f"Bearer {jwt.encode(body, key, algorithm='ES256', headers={'kid': 'cp-1'})}"}

    start = start_of("rc3", str(uuid.uuid4()), new_consumer())
    assert httpx.post(f"{base}/start", json=start, headers=KEY).status_code == 401  # the shared key is not enough
    assert httpx.post(f"{base}/start", json=start, headers=bearer(stranger)).status_code == 401
    assert httpx.post(f"{base}/start", json=start, headers=bearer(theirs, aud="someone-else")).status_code == 401
    assert httpx.post(f"{base}/start", json=start, headers=bearer(theirs, exp=int(time.time()) - 10)).status_code == 401
    assert httpx.post(f"{base}/start", json=start, headers=bearer(theirs, sub="intruder")).status_code == 403
    assert db_grants(svc) == []
    answer = httpx.post(f"{base}/start", json=start, headers=bearer(theirs), timeout=30)
    assert answer.status_code == 202 and answer.json()["state"] == "STARTING", answer.text

    # the registration: RC3's schema, our JWKS in the oauth2 authorization entry
    path, registration, headers = wait_for(lambda: stub.registrations, 30, what="the registration")[0]
    assert path == "/management/v4/dataplanes" and headers["authorization"].startswith("Bearer ")
    validate("rc3", "DataPlaneRegistrationMessage", registration)
    assert registration["endpoint"] == "https://dataplane.example/dps"
    assert registration["dataplaneId"] == "workflow-middlelayer"
    jwks = registration["authorization"]["jwks"]
    assert "d" not in jwks["keys"][0]  # the public half only (no private scalar)
    # the `started` callback carries the token in its body and our JWT in its header
    call = wait_for(lambda: stub.signals("started", start["processId"]), 90, what="started")[0]
    validate("rc3", "DataFlowStatusMessage", call.body)
    assert call.body["dataAddress"]["endpointType"] == "https://w3id.org/dspace-sig/profile/http-pull"
    scheme, _, token = (call.api_key or "").partition(" ")
    assert scheme == "Bearer"
    key = jwt.PyJWKSet.from_dict(jwks).keys[0].key
    claims = jwt.decode(token, key, algorithms=["ES256"], audience="edc-control-plane")
    assert claims["sub"] == claims["iss"] == "workflow-middlelayer"


def test_kubernetes_down_during_start_answers_starting_and_loses_nothing(
    make_settings: Callable[..., ProvisionerSettings], edc: tuple[EdcStub, str], tmp_path: Path
) -> None:
    """Kubernetes unreachable: the start is kept and answered STARTING (DPS's way of saying "later");
    once Kubernetes is back the reconciler builds the tenant and the `started` callback carries the token."""
    stub, _ = edc
    real = make_settings(dps_enabled=True, signaling_verify_with_management=False)
    config = yaml.safe_load(real.kubeconfig.read_text())
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = f"https://127.0.0.1:{free_port()}"  # nothing listens there
    dead = tmp_path / "dead-kubeconfig"
    dead.write_text(yaml.safe_dump(config))
    settings = make_settings(
        dps_enabled=True,
        signaling_verify_with_management=False,
        kubeconfig=dead,
        kube_timeout_seconds=1.0,
        signaling_start_wait_seconds=1.0,
    )
    svc = build_services(settings)
    process, consumer = str(uuid.uuid4()), new_consumer()
    try:
        with ThreadedServer(create_app(settings, services=svc)) as server:
            answer = httpx.post(
                f"{server.url}/dps/dataflows/start", json=start_of("rc3", process, consumer), headers=KEY, timeout=30
            )
        assert answer.status_code == 202 and answer.json()["state"] == "STARTING", answer.text
        assert [g.state for g in db_grants(svc)] in (["provisioning"], ["callback"])
        assert stub.signals("started", process) == []
    finally:
        svc.close()

    back = build_services(real)  # Kubernetes is back (a restarted provisioner: nothing kept in memory)
    try:

        async def reconcile() -> None:
            worker = Scheduler(back)
            try:
                for _ in range(120):
                    await worker.reconcile_once()
                    await worker.runner.drain()
                    if stub.signals("started", process):
                        return
                    await asyncio.sleep(0.5)
            finally:
                await worker.close()

        asyncio.run(reconcile())
        [call] = stub.signals("started", process)
        validate("rc3", "DataFlowStatusMessage", call.body)
        token = token_of(call.body)
        assert live_digests(back, tenant_id_for(consumer)) == {hashlib.sha256(token.encode()).hexdigest()}
    finally:
        cleanup(back)
        back.close()
