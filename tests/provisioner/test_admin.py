"""Operator surface: health, readiness, metrics, admin endpoints (own token), the CLI."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

from provisioner.infra.models import TenantState
from provisioner.infra.services import Services
from tests.provisioner.helpers import ADMIN_TOKEN, db_tenant
from tests.provisioner.servers import EdcStub, wait_for
from tests.support.edc import edc_request, new_consumer, post, tenant_of
from tests.support.s3 import user_exists

pytestmark = pytest.mark.stack
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def test_health_readiness_metrics(provisioner: str) -> None:
    assert httpx.get(f"{provisioner}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{provisioner}/readyz", timeout=30)
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": "ok", "kubernetes": "ok", "storage": "ok"}
    post(provisioner, None, raw=b"{")
    assert httpx.get(f"{provisioner}/metrics").status_code in (401, 403)  # operators' data: behind the token
    metrics = httpx.get(f"{provisioner}/metrics", headers=ADMIN).text
    assert 'wml_provisioner_requests_total{code="400",type="unknown"} 1.0' in metrics


def test_admin_endpoints_and_forced_teardown(provisioner: str, services: Services, edc: tuple[EdcStub, str]) -> None:
    stub, edc_url = edc
    consumer = new_consumer()
    tenant = tenant_of(consumer)
    body = edc_request(consumer=consumer, callback=f"{edc_url}/management/callback")
    stub.register(body["transferProcessId"], consumer, "dummy")
    assert post(provisioner, body).status_code == 201
    wait_for(lambda: stub.provisions(body["transferProcessId"]), 60, what="callback")

    assert httpx.get(f"{provisioner}/admin/tenants").status_code == 401
    assert httpx.get(f"{provisioner}/admin/tenants", headers={"Authorization": "Bearer wrong"}).status_code == 401
    tenants = httpx.get(f"{provisioner}/admin/tenants", headers=ADMIN).json()
    assert [(t["id"], t["consumer_id"], t["state"]) for t in tenants] == [(tenant, consumer, "ready")]
    assert "token" not in str(tenants).replace("token_sha256", "")
    detail = httpx.get(f"{provisioner}/admin/tenants/{tenant}", headers=ADMIN).json()
    assert [g["transfer_process_id"] for g in detail["grants"]] == [body["transferProcessId"]]
    assert httpx.get(f"{provisioner}/admin/tenants/t-nope", headers=ADMIN).status_code == 404
    grants = httpx.get(f"{provisioner}/admin/grants", params={"state": "provisioned"}, headers=ADMIN).json()
    assert len(grants) == 1
    events = [e["event"] for e in httpx.get(f"{provisioner}/admin/audit", headers=ADMIN).json()]
    for expected in (
        "provision_received",
        "tenant_created",
        "grant_linked",
        "credentials_set",
        "grant_ready",
        "tenant_ready",
        "callback_sent",
    ):
        assert expected in events

    response = httpx.post(f"{provisioner}/admin/tenants/{tenant}/teardown", headers=ADMIN)
    assert response.status_code == 202
    wait_for(lambda: db_tenant(services, tenant).state == TenantState.DELETED, 120, what="forced teardown")
    assert services.kube.get("v1", "Namespace", services.settings.namespace_for(tenant)) is None
    assert not user_exists(services.storage, f"wml-{tenant}")


def test_admin_disabled_without_token(make_settings: object, services: Services) -> None:
    from provisioner.app import create_app
    from tests.provisioner.servers import ThreadedServer

    settings = services.settings.model_copy(update={"admin_token": None, "reconciler_enabled": False})
    with ThreadedServer(create_app(settings, services=services)) as server:
        assert httpx.get(f"{server.url}/admin/tenants", headers=ADMIN).status_code == 403


def test_cli_migrate_and_tenants(services: Services) -> None:
    env = {**os.environ, "WML_PROVISIONER_DATABASE_URL": services.settings.database_url}
    cli = [sys.executable, "-m", "provisioner.cli"]
    migrated = subprocess.run([*cli, "migrate"], env=env, capture_output=True, text=True, timeout=120)
    assert migrated.returncode == 0, migrated.stderr
    assert "is at head" in migrated.stdout
    listed = subprocess.run([*cli, "tenants"], env=env, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert "tenant" in listed.stdout and "consumer" in listed.stdout


ECHO_ASSET = """
name: echo
version: "2"
worker:
  image: imlahso/dummy-job
  command: ["/bin/sh", "-c", "cp /data/in /output/out"]
  outputDir: /output
inputs:
  - {name: in, kind: file, path: /data/in}
outputs:
  - {name: out, path: /output/out}
"""


def test_assets_registered_through_the_admin_api(
    provisioner: str, services: Services, edc: tuple[EdcStub, str]
) -> None:
    stub, edc_url = edc
    url = f"{provisioner}/admin/assets/urn:asset:echo"
    assert httpx.put(url, content=ECHO_ASSET).status_code == 401
    bad = httpx.put(url, content="name: echo\nworker: {image: x}\nbogus: 1\n", headers=ADMIN)
    assert bad.status_code == 400 and "bogus" in bad.text
    assert httpx.put(f"{provisioner}/admin/assets/dummy", content=ECHO_ASSET, headers=ADMIN).status_code == 409
    created = httpx.put(url, content=ECHO_ASSET, headers=ADMIN)
    assert created.status_code == 201, created.text
    assert httpx.put(url, content=ECHO_ASSET, headers=ADMIN).status_code == 200
    listed = {(a["edc_asset_id"], a["source"]) for a in httpx.get(f"{provisioner}/admin/assets", headers=ADMIN).json()}
    assert {("urn:asset:echo", "admin"), ("dummy", "directory"), ("input-dummy", "directory")} <= listed

    consumer = new_consumer()
    body = edc_request(asset="urn:asset:echo", consumer=consumer, callback=f"{edc_url}/management/callback")
    stub.register(body["transferProcessId"], consumer, "urn:asset:echo")
    assert post(provisioner, body).status_code == 201
    call = wait_for(lambda: stub.provisions(body["transferProcessId"]), 60, what="callback")[0]
    assert call.body["assetId"] == "urn:asset:echo"
    namespace = services.settings.namespace_for(tenant_of(consumer))
    template = services.kube.get("argoproj.io/v1alpha1", "WorkflowTemplate", "wml-echo", namespace)
    assert template is not None and template["metadata"]["annotations"]["workflow-middlelayer.io/asset-version"] == "2"

    assert httpx.delete(url, headers=ADMIN).status_code == 204
    assert httpx.delete(url, headers=ADMIN).status_code == 404
    gone = post(
        provisioner,
        edc_request(asset="urn:asset:echo", consumer=new_consumer(), callback=f"{edc_url}/management/callback"),
    )
    assert gone.status_code == 422
