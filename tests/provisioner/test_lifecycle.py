"""A tenant's whole life on the real stack: provision -> callback -> isolation -> deprovision/expiry."""

from __future__ import annotations

import hashlib
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from api.app import create_app as create_api
from api.settings import ApiSettings
from devstack.servers import serve
from provisioner.infra.models import GrantState, TenantState
from provisioner.infra.services import Services
from provisioner.manifests import access
from provisioner.steps import APPLY
from templates.labels import LABEL_TENANT
from templates.names import API, API_ENV_SECRET, WORKER
from tests.provisioner.helpers import (
    ADMIN_TOKEN,
    db_grants,
    db_tenant,
    expected_objects,
    kube_as,
    managed_objects,
    put,
    s3_denied,
    secret_data,
    tenant_s3,
)
from tests.provisioner.servers import EdcStub, wait_for
from tests.support.edc import edc_request, new_consumer, post, tenant_of
from tests.support.s3 import user_exists

EDC_NS = "https://w3id.org/edc/v0.0.1/ns/"  # spelt out here on purpose: the wire format, not our constant

pytestmark = pytest.mark.stack


def provision(url: str, edc: tuple[EdcStub, str], consumer: str, asset: str = "dummy", **kw: object) -> dict:
    """A provision request for a transfer the stand-in connector has, as EDC sends it; 201 expected."""
    stub, edc_url = edc
    body = edc_request(asset=asset, consumer=consumer, callback=f"{edc_url}/management/callback", **kw)
    stub.register(body["transferProcessId"], consumer, asset)
    response = post(url, body)
    assert response.status_code == 201, response.text
    return body


def test_provision_creates_every_object_and_calls_back(
    provisioner: str, services: Services, edc: tuple[EdcStub, str]
) -> None:
    stub, _ = edc
    consumer = new_consumer()
    started = time.monotonic()
    body = provision(provisioner, edc, consumer)
    call = wait_for(lambda: stub.provisions(body["transferProcessId"]), 90, what="provision callback")[0]
    print(f"\nprovision request -> callback: {time.monotonic() - started:.2f}s (first tenant, cold)")
    tenant = tenant_of(consumer)
    namespace = services.settings.namespace_for(tenant)

    # the callback: documented body, management API key
    token = call.body["apiKeyJwt"]
    assert call.api_key == "test-management-key" and not stub.rejected
    assert call.path == f"/management/callback/{body['transferProcessId']}/provision"
    assert call.body == {
        "edctype": "dataspaceconnector:provisioner-callback-request",
        "resourceDefinitionId": body["resourceDefinitionId"],
        "assetId": "dummy",
        "resourceName": call.body["resourceName"],
        "contentDataAddress": {
            "properties": {  # under EDC's vocabulary, as EDC's own HttpData addresses are
                f"{EDC_NS}type": "HttpData",
                f"{EDC_NS}baseUrl": services.settings.api_url_for(tenant),
                f"{EDC_NS}authKey": "Authorization",
                f"{EDC_NS}authCode": f"Bearer {token}",
                f"{EDC_NS}proxyPath": "true",
                f"{EDC_NS}proxyMethod": "true",
                f"{EDC_NS}proxyQueryParams": "true",
                f"{EDC_NS}proxyBody": "true",
            }
        },
        "apiKeyJwt": token,
        "hasToken": True,
    }
    assert call.body["resourceName"].startswith(f"workflow-api-{tenant}-") and len(token) >= 40

    # every object, and nothing else of ours
    ns = services.kube.get("v1", "Namespace", namespace)
    assert ns is not None
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "baseline"
    [grant] = db_grants(services, tenant)
    assert managed_objects(services, namespace) == expected_objects(["dummy"], [grant.id])
    template = services.kube.get("argoproj.io/v1alpha1", "WorkflowTemplate", "wml-dummy", namespace)
    assert template["spec"]["serviceAccountName"] == "wml-worker"
    assert template["metadata"]["labels"][LABEL_TENANT] == tenant
    # no long-lived executor token: job pods get a projected one, bound to the pod
    assert services.kube.get("v1", "Secret", "wml-worker.service-account-token", namespace) is None

    # only the token's hash reaches the API; the database file never holds the token
    row = db_tenant(services, tenant)
    assert row is not None and row.state == TenantState.READY
    api_env = secret_data(services, namespace, API_ENV_SECRET)
    assert api_env["WML_API_TOKEN_SHA256"] == hashlib.sha256(token.encode()).hexdigest()
    db_file = Path(services.settings.database_url.removeprefix("sqlite:///"))
    for path in [db_file, *db_file.parent.glob(db_file.name + "-wal")]:
        assert token.encode() not in path.read_bytes()
    [grant] = db_grants(services, tenant)
    assert grant.state == GrantState.PROVISIONED and grant.consumer_id == consumer

    # the tenant's S3 user works on its own prefix
    s3 = tenant_s3(services, tenant)
    put(s3, services.settings.s3_bucket, f"tenants/{tenant}/staging/dummy/env", b"SOURCE=/etc/os-release\n")

    # a second contract of the same consumer: same tenant, its own token, one more template
    started = time.monotonic()
    second = provision(provisioner, edc, consumer, asset="input-dummy")
    call2 = wait_for(lambda: stub.provisions(second["transferProcessId"]), 60, what="second callback")[0]
    print(f"provision request -> callback: {time.monotonic() - started:.2f}s (warm, existing tenant)")
    assert call2.body["apiKeyJwt"] != token  # a grant never receives another grant's token
    assert call2.body["resourceName"] != call.body["resourceName"]
    grant_ids = [g.id for g in db_grants(services, tenant)]
    assert managed_objects(services, namespace) == expected_objects(["dummy", "input-dummy"], grant_ids)
    digests = secret_data(services, namespace, API_ENV_SECRET)["WML_API_TOKEN_SHA256"].split(",")
    assert sorted(digests) == sorted(hashlib.sha256(t.encode()).hexdigest() for t in (token, call2.body["apiKeyJwt"]))

    # Every step of a whole pass has its time on /metrics, where an operator sees which one a new tenant waits for.
    metrics = httpx.get(f"{provisioner}/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).text
    timed = set(re.findall(r'wml_provisioner_step_seconds_count\{step="([a-z_0-9]+)"\} [1-9]', metrics))
    assert {step.name for step in APPLY} <= timed


def test_tenant_token_works_against_the_api(provisioner: str, services: Services, edc: tuple[EdcStub, str]) -> None:
    """The consumer API, configured exactly as the provisioner configures its Deployment (same env,
    a TokenRequest token of the tenant's wml-api ServiceAccount), accepts the callback's token."""
    stub, _ = edc
    consumer = new_consumer()
    body = provision(provisioner, edc, consumer)
    token = wait_for(lambda: stub.provisions(body["transferProcessId"]), 90, what="callback")[0].body["apiKeyJwt"]
    env = access.tenant_api_env(services.kube, services.settings, tenant_of(consumer))
    settings = ApiSettings(**{k.removeprefix("WML_API_").lower(): v for k, v in env.items()})
    with serve(create_api(settings)) as api_url:
        bad = httpx.get(f"{api_url}/v1/assets", headers={"Authorization": "Bearer nope"}, timeout=30)
        assert bad.status_code == 401
        ok = httpx.get(f"{api_url}/v1/assets", headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert ok.status_code == 200, ok.text
        assert "dummy" in ok.text


def test_isolation_between_tenants(provisioner: str, services: Services, edc: tuple[EdcStub, str]) -> None:
    stub, _ = edc
    a, b = new_consumer(), new_consumer()
    bodies = [provision(provisioner, edc, a), provision(provisioner, edc, b)]
    for body in bodies:
        wait_for(lambda body=body: stub.provisions(body["transferProcessId"]), 90, what="callbacks")
    ta, tb = tenant_of(a), tenant_of(b)
    ns_a, ns_b = services.settings.namespace_for(ta), services.settings.namespace_for(tb)

    # Kubernetes: A's API ServiceAccount may use Argo objects in its namespace only, and no Secrets
    with kube_as(services, services.kube.service_account_token(ns_a, API)) as kube_a:
        assert kube_a.get(f"/apis/argoproj.io/v1alpha1/namespaces/{ns_a}/workflows").status_code == 200
        assert kube_a.get(f"/apis/argoproj.io/v1alpha1/namespaces/{ns_a}/workflowtemplates").status_code == 200
        assert kube_a.get(f"/apis/argoproj.io/v1alpha1/namespaces/{ns_b}/workflows").status_code == 403
        assert kube_a.get(f"/apis/argoproj.io/v1alpha1/namespaces/{ns_b}/workflowtemplates").status_code == 403
        assert kube_a.get(f"/api/v1/namespaces/{ns_b}/pods").status_code == 403
        assert kube_a.get(f"/api/v1/namespaces/{ns_a}/secrets").status_code == 403
        assert kube_a.get(f"/api/v1/namespaces/{ns_b}/secrets/wml-s3").status_code == 403
        denied = kube_a.post(
            f"/apis/argoproj.io/v1alpha1/namespaces/{ns_a}/workflowtemplates",
            json={
                "apiVersion": "argoproj.io/v1alpha1",
                "kind": "WorkflowTemplate",
                "metadata": {"name": "mine"},
                "spec": {},
            },
        )
        assert denied.status_code == 403
    # the worker account can do nothing but report task results
    with kube_as(services, services.kube.service_account_token(ns_a, WORKER)) as kube_w:
        assert kube_w.get(f"/apis/argoproj.io/v1alpha1/namespaces/{ns_a}/workflows").status_code == 403
        assert kube_w.get(f"/api/v1/namespaces/{ns_a}/secrets").status_code == 403

    # S3: A's credentials cannot read, list or write B's objects
    bucket = services.settings.s3_bucket
    s3_a, s3_b = tenant_s3(services, ta), tenant_s3(services, tb)
    put(s3_b, bucket, f"tenants/{tb}/jobs/j1/outputs/result", b"B's secret result")
    put(s3_a, bucket, f"tenants/{ta}/jobs/j1/outputs/result", b"A's result")
    assert s3_a.get_object(bucket, f"tenants/{ta}/jobs/j1/outputs/result").read() == b"A's result"
    assert s3_denied(lambda: s3_a.get_object(bucket, f"tenants/{tb}/jobs/j1/outputs/result").read())
    assert s3_denied(lambda: list(s3_a.list_objects(bucket, prefix=f"tenants/{tb}/", recursive=True)))
    assert s3_denied(lambda: list(s3_a.list_objects(bucket, prefix="tenants/", recursive=True)))
    assert s3_denied(lambda: put(s3_a, bucket, f"tenants/{tb}/jobs/j1/outputs/result", b"overwrite"))
    assert s3_denied(lambda: put(s3_a, bucket, "elsewhere/x", b"x"))
    assert s3_b.get_object(bucket, f"tenants/{tb}/jobs/j1/outputs/result").read() == b"B's secret result"


def test_deprovision_of_last_grant_tears_down_and_calls_back(
    provisioner: str, services: Services, edc: tuple[EdcStub, str]
) -> None:
    stub, _ = edc
    consumer = new_consumer()
    first = provision(provisioner, edc, consumer)
    second = provision(provisioner, edc, consumer, asset="input-dummy")
    for body in (first, second):
        wait_for(lambda body=body: stub.provisions(body["transferProcessId"]), 90, what="callbacks")
    tenant = tenant_of(consumer)
    namespace = services.settings.namespace_for(tenant)
    bucket = services.settings.s3_bucket
    s3 = tenant_s3(services, tenant)
    put(s3, bucket, f"tenants/{tenant}/jobs/j1/outputs/result")

    # deprovision of one asset: exactly 200; the tenant stays, that asset's template goes
    stub.end(second["transferProcessId"])
    assert post(provisioner, {**second, "type": "deprovision"}).status_code == 200
    wait_for(
        lambda: ("WorkflowTemplate", "wml-input-dummy") not in managed_objects(services, namespace),
        60,
        what="template removed",
    )
    first_grant = next(g.id for g in db_grants(services, tenant) if g.transfer_process_id == first["transferProcessId"])
    assert managed_objects(services, namespace) == expected_objects(["dummy"], [first_grant])  # its token is gone
    # ready again once the API no longer takes the ended grant's token (the run waits for its token set)
    wait_for(lambda: db_tenant(services, tenant).state == TenantState.READY, 60, what="the tenant ready again")
    wait_for(lambda: stub.deprovisions(second["transferProcessId"]), 30, what="deprovision callback")

    # deprovision of the last: every token refused first (401 through the ingress, never a 5xx, never served past
    # the API's token refresh), then everything goes, then the deprovision callback
    token = stub.provisions(first["transferProcessId"])[0].body["apiKeyJwt"]
    url = f"{services.settings.api_url_for(tenant).rstrip('/')}/v1/assets"
    assert httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=30).status_code == 200
    stub.end(first["transferProcessId"])
    response = post(provisioner, {**first, "type": "deprovision"})
    answered = time.monotonic()
    assert response.status_code == 200
    seen: list[tuple[float, int]] = []
    while db_tenant(services, tenant).state != TenantState.DELETED and time.monotonic() - answered < 120:
        status = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=30).status_code
        seen.append((time.monotonic() - answered, status))
        time.sleep(0.1)
    wait_for(lambda: db_tenant(services, tenant).state == TenantState.DELETED, 120, what="teardown")
    assert all(status in (200, 401, 404) for _, status in seen), seen
    refresh = services.settings.api_token_refresh_seconds
    assert all(at <= refresh + 1.0 for at, status in seen if status == 200), seen  # revoked within the refresh
    assert any(status == 401 for _, status in seen), seen  # refused while the tenant still existed
    assert services.kube.get("v1", "Namespace", namespace) is None
    assert not user_exists(services.storage, f"wml-{tenant}")
    assert list(services.storage.s3.list_objects(bucket, prefix=f"tenants/{tenant}/", recursive=True)) == []
    assert s3_denied(lambda: put(s3, bucket, f"tenants/{tenant}/again"))
    call = wait_for(lambda: stub.deprovisions(first["transferProcessId"]), 30, what="deprovision callback")[0]
    assert call.body == {
        "provisionedResourceId": call.body["provisionedResourceId"],
        "inProcess": False,
        "error": False,
        "errorMessage": None,
    }
    assert {g.state for g in db_grants(services, tenant)} == {GrantState.DEPROVISIONED}
    assert db_tenant(services, tenant).token_sha256 is None

    # the consumer contracts again later: a fresh tenant generation with a new token
    again = provision(provisioner, edc, consumer)
    call = wait_for(lambda: stub.provisions(again["transferProcessId"]), 90, what="callback")[0]
    assert call.body["apiKeyJwt"] != stub.provisions(first["transferProcessId"])[0].body["apiKeyJwt"]
    assert db_tenant(services, tenant).generation == 2


def deprovisions_counted(provisioner: str) -> float:
    metrics = httpx.get(f"{provisioner}/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).text
    found = re.search(r'wml_provisioner_requests_total\{code="200",type="deprovision"\} ([0-9.]+)', metrics)
    return float(found.group(1)) if found else 0.0


def test_typeless_deprovision_of_edc_0_10_is_told_apart_by_the_transfer_state(
    provisioner: str, services: Services, edc: tuple[EdcStub, str]
) -> None:
    """EDC <= 0.10 sends deprovision with the provision request's very body (no `type`)."""
    stub, _ = edc
    consumer = new_consumer()
    body = provision(provisioner, edc, consumer, kind=None)
    tp = body["transferProcessId"]
    tenant = tenant_of(consumer)

    def grants() -> set[GrantState]:
        return {g.state for g in db_grants(services, tenant)}

    wait_for(lambda: grants() == {GrantState.PROVISIONED}, 90, what="callback accepted")

    # while EDC's management API cannot say what the transfer is doing: 503, so that EDC asks again
    stub.management_down = True
    response = post(provisioner, body)
    assert response.status_code == 503 and response.headers["retry-after"]
    assert grants() == {GrantState.PROVISIONED}
    stub.management_down = False

    # a repeat while EDC reports the transfer running is a provision retry: nothing changes
    stub.states[tp] = "STARTED"
    response = post(provisioner, body)
    assert response.status_code == 200 and response.json()["tenant"] == tenant
    assert grants() == {GrantState.PROVISIONED}

    # the same body once EDC is deprovisioning the transfer: a deprovision, answered with exactly 200
    stub.states[tp] = "DEPROVISIONING"
    counted = deprovisions_counted(provisioner)
    response = post(provisioner, body)
    assert response.status_code == 200 and response.json()["state"] == GrantState.DEPROVISIONING
    assert deprovisions_counted(provisioner) == counted + 1  # and counted as such in the metrics
    wait_for(lambda: db_tenant(services, tenant).state == TenantState.DELETED, 120, what="teardown")
    wait_for(lambda: stub.deprovisions(tp), 30, what="deprovision callback")


def test_expiry_tears_the_tenant_down(provisioner: str, services: Services, edc: tuple[EdcStub, str]) -> None:
    """Time is the provisioner's injected clock: the contract ends in an hour, and the clock is moved past it."""
    stub, _ = edc
    consumer = new_consumer()
    skew = [timedelta(0)]  # the clock runs, and can be moved forward
    services.clock = lambda: datetime.now(UTC) + skew[0]
    ends = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    policy = {
        "assignee": consumer,
        "permissions": [
            {
                "constraints": [
                    {
                        "leftExpression": {"value": "https://w3id.org/edc/v0.0.1/ns/inForceDate"},
                        "operator": "LEQ",
                        "rightExpression": {"value": ends},
                    }
                ]
            }
        ],
    }
    body = provision(provisioner, edc, consumer, policy=policy)
    wait_for(lambda: stub.provisions(body["transferProcessId"]), 60, what="callback")
    tenant = tenant_of(consumer)
    assert db_tenant(services, tenant).expires_at == datetime.fromisoformat(ends)
    assert db_tenant(services, tenant).state == TenantState.READY  # not a moment early
    skew[0] = timedelta(hours=1, seconds=1)
    wait_for(lambda: db_tenant(services, tenant).state == TenantState.DELETED, 120, what="expiry teardown")
    assert services.kube.get("v1", "Namespace", services.settings.namespace_for(tenant)) is None
    assert not user_exists(services.storage, f"wml-{tenant}")
    [grant] = db_grants(services, tenant)
    assert grant.state == GrantState.DEPROVISIONED and grant.ended_by == "expiry"
    assert stub.deprovisions() == []  # EDC did not ask; it is not told


def test_callback_retries_then_succeeds(provisioner: str, services: Services, edc: tuple[EdcStub, str]) -> None:
    stub, _ = edc
    stub.fail_next = 2
    consumer = new_consumer()
    body = provision(provisioner, edc, consumer)
    wait_for(lambda: stub.provisions(body["transferProcessId"]), 60, what="callback after retries")
    [grant] = db_grants(services, tenant_of(consumer))
    assert grant.state == GrantState.PROVISIONED and grant.attempts == 3


def test_callback_gives_up_loudly(services: Services, provisioner: str, edc: tuple[EdcStub, str]) -> None:
    stub, _ = edc
    consumer = new_consumer()
    stub.fail_next = 1000  # the connector answers every callback with 503
    provision(provisioner, edc, consumer)
    tenant = tenant_of(consumer)
    wait_for(lambda: db_grants(services, tenant)[0].state == GrantState.FAILED, 60, what="gave up")
    grant = db_grants(services, tenant)[0]
    assert grant.attempts == services.settings.callback_max_attempts
    admin = httpx.get(
        f"{provisioner}/admin/audit",
        params={"tenant": tenant},
        headers={"Authorization": "Bearer test-admin-token"},
        timeout=30,
    ).json()
    assert "callback_failed" in [e["event"] for e in admin]
    assert httpx.get(f"{provisioner}/admin/audit", timeout=30).status_code == 401


def test_consumer_from_management_api(provisioner: str, services: Services, edc: tuple[EdcStub, str]) -> None:
    stub, edc_url = edc
    consumer = new_consumer()
    body = edc_request(consumer=None, callback=f"{edc_url}/management/callback")  # no assignee in the policy
    stub.register(body["transferProcessId"], consumer, "dummy", contract="contract-77")
    response = post(provisioner, body)
    assert response.status_code == 201 and response.json()["tenant"] == tenant_of(consumer)
    wait_for(lambda: stub.provisions(body["transferProcessId"]), 90, what="callback")
    [grant] = db_grants(services, tenant_of(consumer))
    assert grant.consumer_id == consumer and grant.contract_id == "contract-77"
    env = access.tenant_api_env(services.kube, services.settings, tenant_of(consumer), argo_token_seconds=None)
    assert env["WML_API_CONTRACT_ID"] == "contract-77"


def test_isolation_through_argo_server(provisioner: str, services: Services, edc: tuple[EdcStub, str]) -> None:
    """Argo Server in client auth mode applies the caller's RBAC: A's token sees A's namespace only."""
    stub, _ = edc
    a, b = new_consumer(), new_consumer()
    for consumer in (a, b):
        body = provision(provisioner, edc, consumer)
        wait_for(lambda body=body: stub.provisions(body["transferProcessId"]), 90, what="callback")
    ns_a, ns_b = (services.settings.namespace_for(tenant_of(c)) for c in (a, b))
    headers = {"Authorization": f"Bearer {services.kube.service_account_token(ns_a, API)}"}
    argo = services.settings.argo_server_url
    own = httpx.get(f"{argo}/api/v1/workflow-templates/{ns_a}", headers=headers, timeout=30)
    assert own.status_code == 200, own.text
    assert "wml-dummy" in own.text
    assert httpx.get(f"{argo}/api/v1/workflows/{ns_a}", headers=headers, timeout=30).status_code == 200
    assert httpx.get(f"{argo}/api/v1/workflows/{ns_b}", headers=headers, timeout=30).status_code == 403
    assert httpx.get(f"{argo}/api/v1/workflow-templates/{ns_b}", headers=headers, timeout=30).status_code == 403


def test_a_job_runs_in_a_provisioned_tenant(
    provisioner: str, services: Services, edc: tuple[EdcStub, str], tmp_path: Path
) -> None:
    """Everything the provisioner made works together: the executor's account and token Secret, the
    quota and limit defaults, pod security, the tenant's S3 user and prefix, the compiled template."""
    from api.client import Client

    stub, _ = edc
    consumer = new_consumer()
    body = provision(provisioner, edc, consumer)
    token = wait_for(lambda: stub.provisions(body["transferProcessId"]), 90, what="callback")[0].body["apiKeyJwt"]
    tenant = tenant_of(consumer)
    env = access.tenant_api_env(services.kube, services.settings, tenant)
    settings = ApiSettings(**{k.removeprefix("WML_API_").lower(): v for k, v in env.items()})
    with serve(create_api(settings)) as api_url, Client(api_url, token) as client:
        client.upload_bytes("dummy", "env", b"SOURCE=/etc/os-release\nDESTINATION=/output/result\nSLEEPTIME=1\n")
        job = client.start("dummy")
        done = client.wait(job["id"], timeout=300)
        assert done["state"] == "COMPLETE", done
        result = client.download(job["id"], "result", tmp_path / "result").read_text()
        assert result.strip()
    keys = [
        o.object_name
        for o in services.storage.s3.list_objects(
            services.settings.s3_bucket, prefix=f"tenants/{tenant}/jobs/", recursive=True
        )
    ]
    assert any(k.endswith("/outputs/result") for k in keys), keys
