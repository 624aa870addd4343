"""The provisioner trusts no request body: a caller without the connector's key, a forged identity, a transfer the
connector does not have, a foreign callback address, another grant's token. Real HTTP, real stack; the connector is
the stand-in of tests/provisioner/servers.py, which answers from its own records as EDC's management API does."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response

from api.app import create_app as create_api
from api.settings import ApiSettings
from devstack.servers import serve
from provisioner.app import PROVISION_PATH, build_services
from provisioner.infra.models import GrantState, Tenant
from provisioner.infra.services import Services
from provisioner.manifests import access
from templates.names import API_ENV_SECRET, grant_token_secret_name
from tests.provisioner.helpers import INBOUND_KEY, counts, db_grants, put, s3_denied, secret_data, tenant_s3
from tests.provisioner.servers import EdcStub, ThreadedServer, wait_for
from tests.support.edc import edc_request, new_consumer, post, tenant_of

pytestmark = pytest.mark.stack


@pytest.mark.parametrize("key", [None, "", "wrong", INBOUND_KEY + "x"])
def test_callers_without_the_connector_key_are_refused(
    provisioner: str, services: Services, contract: Callable[..., dict[str, Any]], key: str | None
) -> None:
    response = post(provisioner, contract(), key=key)
    assert response.status_code in (401, 403)
    assert counts(services) == (0, 0)


def test_the_key_as_last_path_segment_is_accepted(
    provisioner: str, services: Services, contract: Callable[..., dict[str, Any]]
) -> None:
    body = contract()
    assert httpx.post(f"{provisioner}{PROVISION_PATH}/wrong", json=body, timeout=30).status_code == 401
    response = httpx.post(f"{provisioner}{PROVISION_PATH}/{INBOUND_KEY}", json=body, timeout=30)
    assert response.status_code == 201, response.text


def test_a_forged_assignee_never_reaches_the_victims_tenant(
    provisioner: str, services: Services, edc: tuple[EdcStub, str]
) -> None:
    stub, edc_url = edc
    attacker, victim = new_consumer(), new_consumer()
    # The attacker's own, real transfer, with a body that names the victim
    body = edc_request(consumer=victim, callback=f"{edc_url}/management/callback")
    stub.register(body["transferProcessId"], attacker, "dummy")
    response = post(provisioner, body)
    assert response.status_code == 201 and response.json()["tenant"] == tenant_of(attacker)
    wait_for(lambda: stub.provisions(body["transferProcessId"]), 90, what="callback")
    assert services.kube.get("v1", "Namespace", services.settings.namespace_for(tenant_of(victim))) is None
    with services.sessions() as session:
        assert session.get(Tenant, tenant_of(victim)) is None


@pytest.mark.parametrize("case", ["unknown-transfer", "other-asset", "not-provisioning", "no-agreement"])
def test_requests_the_connector_does_not_confirm_create_nothing(
    provisioner: str, services: Services, edc: tuple[EdcStub, str], case: str
) -> None:
    stub, edc_url = edc
    consumer = new_consumer()
    body = edc_request(consumer=consumer, callback=f"{edc_url}/management/callback")
    tp = body["transferProcessId"]
    if case == "other-asset":
        stub.register(tp, consumer, "input-dummy")
    elif case == "not-provisioning":
        stub.register(tp, consumer, "dummy")
        stub.end(tp, "STARTED")
    elif case == "no-agreement":
        stub.states[tp] = "PROVISIONING"  # a process whose contract the connector does not know
    response = post(provisioner, body)
    assert response.status_code == 403, response.text
    assert "not verified" in response.json()["detail"]
    assert counts(services) == (0, 0)


def test_an_unreachable_connector_is_retryable_and_creates_nothing(
    make_settings: Callable[..., Any], services: Services, edc: tuple[EdcStub, str]
) -> None:
    from provisioner.app import create_app

    _, edc_url = edc
    callback = f"{edc_url}/management/callback"
    down = make_settings(edc_management_url="http://127.0.0.1:9/management", edc_callback_url=callback)
    body = edc_request(consumer=new_consumer(), callback=callback)
    svc = build_services(down)
    try:
        with ThreadedServer(create_app(down, services=svc)) as server:
            response = post(server.url, body)
    finally:
        svc.close()
    assert response.status_code == 503 and response.headers["retry-after"]
    assert counts(services) == (0, 0)


def test_callbacks_never_go_to_an_address_from_the_request(
    provisioner: str, services: Services, edc: tuple[EdcStub, str]
) -> None:
    stub, _ = edc
    stolen: list[dict[str, Any]] = []
    thief = FastAPI()

    @thief.post("/{path:path}")
    async def catch(request: Request) -> Response:
        stolen.append(await request.json())
        return Response(status_code=204)

    consumer = new_consumer()
    with ThreadedServer(thief) as attacker:
        for callback in (f"{attacker.url}/management/callback", "http://169.254.169.254/latest/meta-data"):
            body = edc_request(consumer=consumer, callback=callback)
            stub.register(body["transferProcessId"], consumer, "dummy")
            response = post(provisioner, body)
            assert response.status_code == 403 and "callbackAddress" in response.json()["detail"]
    assert counts(services) == (0, 0) and stolen == []


def test_each_grant_has_its_own_token_and_an_ended_grant_loses_it(
    provisioner: str, services: Services, edc: tuple[EdcStub, str]
) -> None:
    stub, edc_url = edc
    consumer = new_consumer()
    tenant = tenant_of(consumer)
    namespace = services.settings.namespace_for(tenant)
    bodies = []
    for asset in ("dummy", "input-dummy"):
        body = edc_request(asset=asset, consumer=consumer, callback=f"{edc_url}/management/callback")
        stub.register(body["transferProcessId"], consumer, asset)
        assert post(provisioner, body).status_code == 201
        bodies.append(body)
    first, second = (
        wait_for(lambda b=b: stub.provisions(b["transferProcessId"]), 90, what="callback")[0].body["apiKeyJwt"]
        for b in bodies
    )
    assert first != second

    stub.end(bodies[0]["transferProcessId"])
    assert post(provisioner, {**bodies[0], "type": "deprovision"}).status_code == 200
    grant_ids = {g.transfer_process_id: g.id for g in db_grants(services, tenant)}
    ended = grant_token_secret_name(grant_ids[bodies[0]["transferProcessId"]])
    wait_for(lambda: not secret_data(services, namespace, ended), 60, what="the ended grant's token Secret removed")
    gone = grant_ids[bodies[0]["transferProcessId"]]
    # the grant counts as ended once the API's pods (if serving) rolled to the token set without it
    wait_for(
        lambda: [g.state for g in db_grants(services, tenant) if g.id == gone] == [GrantState.DEPROVISIONED],
        60,
        what="the ended grant deprovisioned",
    )
    digests = secret_data(services, namespace, API_ENV_SECRET)["WML_API_TOKEN_SHA256"].split(",")
    assert digests == [hashlib.sha256(second.encode()).hexdigest()]

    # the API built from the tenant's environment accepts the live grant's token only
    env = access.tenant_api_env(services.kube, services.settings, tenant)
    settings = ApiSettings.model_validate({k.removeprefix("WML_API_").lower(): v for k, v in env.items()})
    with serve(create_api(settings)) as url:
        assert (
            httpx.get(f"{url}/v1/assets", headers={"Authorization": f"Bearer {first}"}, timeout=30).status_code == 401
        )
        assert (
            httpx.get(f"{url}/v1/assets", headers={"Authorization": f"Bearer {second}"}, timeout=30).status_code == 200
        )


def test_executor_credentials_reach_nothing_the_api_serves(
    provisioner: str, services: Services, contract: Callable[..., dict[str, Any]], edc: tuple[EdcStub, str]
) -> None:
    stub, _ = edc
    a, b = new_consumer(), new_consumer()
    for consumer in (a, b):
        body = contract(consumer=consumer)
        assert post(provisioner, body).status_code == 201
        wait_for(lambda body=body: stub.provisions(body["transferProcessId"]), 90, what="callback")
    bucket = services.settings.s3_bucket
    ta, tb = tenant_of(a), tenant_of(b)
    executor, api = tenant_s3(services, ta, executor=True), tenant_s3(services, ta)
    job = f"job-{uuid.uuid4().hex[:12]}"
    jobs = f"tenants/{ta}/jobs/{job}"
    put(api, bucket, f"{jobs}/inputs/env", b"SOURCE=x\n")
    # what Argo's executor needs
    assert executor.get_object(bucket, f"{jobs}/inputs/env").read() == b"SOURCE=x\n"
    put(executor, bucket, f"tenants/{ta}/exec/{job}/outputs.tgz")
    put(executor, bucket, f"tenants/{ta}/exec/{job}/logs/pod/main.log")
    # and nothing else: sealed outputs (also ones named like executor keys), receipts, seal records, inputs
    for key in ("outputs/result", "outputs/outputs.tgz", "receipt.json", "sealed.json", "inputs/x/logs/y", "logs/z"):
        assert s3_denied(lambda key=key: put(executor, bucket, f"{jobs}/{key}")), key
    assert s3_denied(lambda: executor.get_object(bucket, f"tenants/{ta}/exec/{job}/outputs.tgz").read())
    assert s3_denied(lambda: put(executor, bucket, f"tenants/{ta}/staging/dummy/env"))
    assert s3_denied(lambda: executor.remove_object(bucket, f"{jobs}/inputs/env"))
    assert api.get_object(bucket, f"{jobs}/inputs/env").read() == b"SOURCE=x\n"  # still there
    assert s3_denied(lambda: put(executor, bucket, f"tenants/{tb}/exec/{job}/outputs.tgz"))
    assert s3_denied(lambda: list(executor.list_objects(bucket, prefix=f"tenants/{ta}/", recursive=True)))
