"""Our provisioner as the data plane of a real EDC 0.15.1 connector pair (data plane signaling).

Both connectors are control planes only (no data plane of their own), assembled from Maven Central. Our
provisioner registers with the provider's control API; the consumer negotiates `input-dummy` over DSP and asks
for an HttpData-PULL transfer with an HTTP event callback. The provider's control plane signals `start` to us;
we make the tenant and answer with its API endpoint and a token, which reach the consumer in its
`TransferProcessStarted` event. With that token alone the consumer talks to the tenant API directly: a binary
input uploaded byte-exact, an idempotent job start, our problem documents, the job run, the outputs
downloaded. The consumer then terminates; EDC signals `terminate` and the tenant is gone.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.client import Client, ClientError
from devstack.demo.contract import _registered, api_ready, wait_namespace_gone
from devstack.demo.events import Events
from devstack.edc.connector import CONTEXT, EDC, V0_15, Connector, ensure_runtime
from devstack.servers import ThreadedServer, free_port
from devstack.stack import kube
from devstack.stack.app_image import ensure_app_image
from devstack.stack.launcher import StackInfo
from provisioner.app import build_services, create_app
from provisioner.infra.services import Services
from tests.edc.test_real_connector import Recorder, _shape
from tests.provisioner.helpers import SIGNALING_KEY, db_grants, stack_settings
from tests.provisioner.servers import wait_for
from tests.support.examples import EXAMPLES

pytestmark = pytest.mark.stack

SOURCE_TYPE = "WorkflowMiddleLayer"
INPUTS = EXAMPLES / "inputs"
START_FIXTURE = Path(__file__).resolve().parents[1] / "provisioner" / "fixtures" / "signaling" / "edc-0.15.1-start.json"


@dataclass
class World:
    provider: Connector
    consumer: Connector
    services: Services
    provisioner: str
    recorder: Recorder
    events: Events
    events_url: str


@pytest.fixture(scope="module")
def runtime() -> Path:
    return ensure_runtime(release=V0_15)


# How long our `start` waits for the tenant: long enough to answer with the endpoint at once, or not at all
# (then EDC gets "provisioning", our `provisioned` callback, and starts again).
WAITS = {"answer-in-start": 8.0, "provisioned-callback": 0.0}


@pytest.fixture(params=list(WAITS))
def world(
    request: pytest.FixtureRequest, stack: StackInfo, runtime: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    image = ensure_app_image()
    key = f"edc-key-{uuid.uuid4().hex[:8]}"
    work = tmp_path_factory.mktemp("edc015")  # kept by pytest for a while: the connectors' logs are there
    provider = Connector("provider", key, work, release=V0_15)
    consumer = Connector("consumer", key, work, release=V0_15)
    port = free_port()
    settings = stack_settings(
        stack,
        f"sqlite:///{work / 'provisioner.db'}",
        "http://unused",
        api_image=image,
        edc_api_key=key,
        edc_management_url=provider.management,
        signaling_enabled=True,
        signaling_control_url=provider.control,
        signaling_control_key=provider.control_key,
        signaling_self_url=f"http://127.0.0.1:{port}",
        signaling_source_types=[SOURCE_TYPE],
        signaling_register_interval_seconds=2.0,
        signaling_start_wait_seconds=WAITS[request.param],
    )
    services = build_services(settings)
    events = Events()
    recorder = Recorder(create_app(settings, services=services), prefix="/signaling")
    try:
        with (
            provider.start(runtime),
            consumer.start(runtime),
            ThreadedServer(recorder, port=port) as server,
            events.serve() as events_url,
        ):
            yield World(provider, consumer, services, server.url, recorder, events, events_url)
    finally:
        services.close()


def offer(provider: Connector, asset_id: str) -> None:
    """An asset whose DataAddress type is ours: the provider's control plane signals its transfers to us."""
    address = {"@type": "DataAddress", "type": SOURCE_TYPE}
    provider.call(
        "POST", "/v3/assets", {"@context": CONTEXT, "@id": asset_id, "properties": {}, "dataAddress": address}
    )
    provider.open_contract(asset_id)


def dataplanes(provider: Connector) -> list[dict[str, Any]]:
    response = httpx.get(f"{provider.control}/v1/dataplanes", headers={"x-api-key": provider.control_key}, timeout=10)
    response.raise_for_status()
    listed = response.json()
    return listed if isinstance(listed, list) else [listed]


def endpoint_of(event: dict[str, Any]) -> tuple[str, str]:
    properties = event["payload"]["dataAddress"]["properties"]
    assert properties[f"{EDC}authType"] == "bearer"
    return properties[f"{EDC}endpoint"], properties[f"{EDC}authorization"]


def test_edc_015_signaling_contract_job_and_terminate(stack: StackInfo, world: World, tmp_path: Path) -> None:
    provider, consumer, services = world.provider, world.consumer, world.services

    # our data plane registered itself (the key is the URL's path segment: EDC sends no credentials)
    registered = wait_for(
        lambda: [d for d in dataplanes(provider) if d.get("@id") == "workflow-middlelayer"], 60, 0.5, "registration"
    )[0]
    # EDC checks it (GET {url}/check) before it selects it for a transfer
    wait_for(lambda: _registered(provider), 60, 0.5, "our data plane AVAILABLE")
    assert registered["url"].endswith(f"/signaling/{SIGNALING_KEY}/dataflows")
    offer(provider, "input-dummy")

    # DSP: catalogue -> contract -> PULL transfer with an HTTP event callback on the consumer
    agreement = consumer.negotiate(provider, "input-dummy")
    consumer_tp = consumer.transfer(provider, agreement, callbacks=[world.events_url])
    consumer.wait_state(f"/v3/transferprocesses/{consumer_tp}", {"STARTED"}, 120, fail={"TERMINATED"})
    process = wait_for(lambda: provider.provider_transfer(consumer_tp), 60, 0.5, "the provider's transfer process")
    provider.wait_state(f"/v3/transferprocesses/{process['@id']}", {"STARTED"}, 30, fail={"TERMINATED"})

    # what EDC 0.15.1 sent: one start, no credentials but the key in the path (the stand-in tests replay it)
    starts = [c for c in world.recorder.calls if c["path"].endswith("/start")]
    asynchronous = services.settings.signaling_start_wait_seconds == 0
    # asynchronous: "provisioning", our `provisioned` callback, EDC's second start for the same process
    assert len(starts) == (2 if asynchronous else 1), starts
    assert starts[0]["body"]["processId"] == starts[-1]["body"]["processId"]
    start = starts[0]
    assert start["status"] == 200 and "x-api-key" not in start["headers"] and "authorization" not in start["headers"]
    assert start["path"] == f"/signaling/{SIGNALING_KEY}/dataflows/start"
    sent = start["body"]
    assert sent["@type"] == "DataFlowStartMessage" and sent["processId"] == process["@id"]
    assert sent["participantId"] == "consumer" and sent["datasetId"] == "input-dummy"
    assert sent["callbackAddress"] == provider.control and sent["flowType"] == "PULL"
    if os.environ.get("WML_EDC_RECORD"):
        START_FIXTURE.write_text(json.dumps(sent, indent=2, sort_keys=True) + "\n")
    assert _shape(sent) == _shape(json.loads(START_FIXTURE.read_text())), "EDC 0.15.1's start message changed shape"

    # the consumer's started event carries our endpoint and the flow's own token
    started = wait_for(lambda: world.events.of("TransferProcessStarted", consumer_tp), 30, 0.5, "the started event")
    endpoint, token = endpoint_of(started[0])
    [grant] = [g for g in db_grants(services) if g.transfer_process_id == process["@id"]]
    assert grant.protocol == "signaling" and grant.consumer_id == "consumer" and grant.state == "provisioned"
    assert grant.delivery == ("callback" if asynchronous else "response")
    assert endpoint == services.settings.api_url_for(grant.tenant_id)

    # with that token alone, to the tenant API through the ingress
    direct = endpoint
    wait_for(lambda: api_ready(direct), 180, 1.0, "the tenant API pod, through the ingress")
    folder = INPUTS / "input-dummy"
    with Client(direct, token) as client:
        assert [a["name"] for a in client.assets()] == ["input-dummy"]
        for name in ("env", "input.zip", "input_testfile", "entrypoint.sh"):
            data = (folder / name).read_bytes()
            assert client.upload("input-dummy", name, folder / name)["sha256"] == hashlib.sha256(data).hexdigest()
        key = uuid.uuid4().hex
        job = client.start("input-dummy", idempotency_key=key)["id"]
        assert client.start("input-dummy", idempotency_key=key)["id"] == job  # the same job, not a second
        with pytest.raises(ClientError) as refused:
            client.start("no-such-asset")
        assert refused.value.status == 404
        problem = client.http.post("/v1/jobs", json={"asset": "no-such-asset"})
        assert problem.headers["content-type"].startswith("application/problem+json")
        assert problem.json()["type"].startswith("urn:workflow-middlelayer:problem:")
        done = client.wait(job, timeout=300)
        assert done["state"] == "COMPLETE", done
        text = client.download(job, "result", tmp_path / "result").read_text()
    assert "zipped: hello from input.zip / nested file" in text
    assert "testfile: this is input_testfile" in text
    with pytest.raises(ClientError) as denied:  # another token is nobody's
        Client(direct, token + "x").assets()
    assert denied.value.status == 401

    # the consumer terminates: EDC signals terminate to us, the token dies, the tenant goes
    namespace = services.settings.namespace_for(grant.tenant_id)
    consumer.terminate(consumer_tp, reason="done")
    consumer.wait_state(f"/v3/transferprocesses/{consumer_tp}", {"TERMINATED"}, 60)
    provider.wait_state(f"/v3/transferprocesses/{process['@id']}", {"TERMINATED", "DEPROVISIONED"}, 60)
    assert wait_namespace_gone(kube.api_client(stack.kubeconfig), namespace), namespace

    def ended() -> Any:
        [grant] = [g for g in db_grants(services) if g.transfer_process_id == process["@id"]]
        return grant.state == "deprovisioned" and grant

    assert wait_for(ended, 60, 0.5, "the grant deprovisioned").ended_by == "terminate"
    terminates = [c for c in world.recorder.calls if c["path"].endswith(f"/{process['@id']}/terminate")]
    assert terminates and all(c["status"] == 204 for c in terminates)
