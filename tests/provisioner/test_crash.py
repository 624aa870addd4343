"""Killed between any two steps, then restarted: the reconciler finishes with no orphan, no duplicate.

A crash is simulated by a hook that raises a BaseException before the chosen step: nothing of ours
catches it, uncommitted transactions roll back and the rest of the run never happens — as with
SIGKILL. "Restart" is a new Services (fresh clients, no in-process state) on the same database, driven
by the reconciler's own pass (``Scheduler.reconcile_once``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections.abc import Callable

import pytest

from provisioner import steps
from provisioner.app import build_services
from provisioner.core import grants, lifecycle, store
from provisioner.core.identity import Identity, IdentitySource
from provisioner.core.scheduler import Scheduler
from provisioner.infra.models import GrantState, TenantState
from provisioner.infra.services import Services
from provisioner.infra.settings import ProvisionerSettings
from provisioner.infra.states import EndedBy, Handover, Protocol
from provisioner.protocols.http_provisioner.routes import request_of
from provisioner.protocols.http_provisioner.wire import ProvisionRequest
from templates.names import grant_token_secret_name
from tests.provisioner.helpers import (
    db_grants,
    db_tenant,
    expected_objects,
    managed_objects,
    put,
    s3_denied,
    secret_data,
    tenant_s3,
)
from tests.provisioner.servers import EdcStub, wait_for
from tests.support.edc import cleanup, edc_request, new_consumer, tenant_of
from tests.support.s3 import user_exists

pytestmark = pytest.mark.stack


class Crash(BaseException):
    pass


def crash_before(step: str) -> Callable[[str], None]:
    def hook(name: str) -> None:
        if name == step:
            raise Crash(step)

    return hook


def restart_and_reconcile(settings: ProvisionerSettings, until: Callable[[Services], bool]) -> None:
    svc = build_services(settings)
    try:

        async def run() -> None:
            worker = Scheduler(svc)
            try:
                for _ in range(100):
                    await worker.reconcile_once()
                    await worker.runner.drain()
                    if until(svc):
                        return
                    await asyncio.sleep(0.3)
                raise AssertionError("reconciler did not finish")
            finally:
                await worker.close()

        asyncio.run(run())
    finally:
        svc.close()


def accept(svc: Services, body: dict, protocol: Protocol = Protocol.HTTP_PROVISIONER) -> int:
    """What the request path stores once the connector verified the transfer (verification is tested apart).
    A signaling start that could not wait for its tenant: the endpoint goes by callback."""
    request = ProvisionRequest.model_validate(body)
    who = Identity(body["policy"]["assignee"], f"contract-{request.transfer_process_id}", IdentitySource.MANAGEMENT)
    asked = request_of(request)
    if protocol is not Protocol.HTTP_PROVISIONER:
        asked = grants.flow_request(protocol, request.transfer_process_id, "dummy", request.callback_base)
        asked = dataclasses.replace(asked, delivery=Handover.CALLBACK)
    return store.accept_provision(svc.sessions, svc.settings, asked, "dummy", svc.clock(), who).grant_id


# What each protocol's connector receives when a grant is ready, and where its token is (signaling's
# `provisioned` carries none: the next start's answer does).
READY_NOTICE = {
    Protocol.HTTP_PROVISIONER: ("provision", lambda body: body["apiKeyJwt"]),
    Protocol.SIGNALING: ("provisioned", lambda body: None),
    Protocol.DPS: ("started", lambda body: body["dataAddress"]["endpointProperties"][0]["value"]),
}
PROTOCOLS = list(Protocol)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("step", [*(s.name for s in steps.APPLY), "callback"])
def test_crash_during_provision_then_resume(
    step: str, protocol: Protocol, services: Services, edc: tuple[EdcStub, str]
) -> None:
    stub, edc_url = edc
    consumer = new_consumer()
    tenant = tenant_of(consumer)
    body = edc_request(consumer=consumer, callback=f"{edc_url}/management/callback")
    accept(services, body, protocol)
    kind, token_of = READY_NOTICE[protocol]

    services.step_hook = crash_before(step)
    with pytest.raises(Crash):
        # Steps after `answers` are reached once the API answers (its pods start): run again as the re-queue does.
        wait_for(lambda: run_once(services, tenant), 120, interval=0.5, what=f"the crash before {step}")
    assert stub.signals(kind) == []

    restart_and_reconcile(services.settings, lambda svc: bool(stub.signals(kind)))
    namespace = services.settings.namespace_for(tenant)
    [call] = stub.signals(kind, body["transferProcessId"])  # exactly one answer
    row = db_tenant(services, tenant)
    assert row.state == TenantState.READY
    [grant] = db_grants(services, tenant)
    assert grant.protocol == protocol
    assert managed_objects(services, namespace) == expected_objects(["dummy"], [grant.id])  # no gap, no orphan
    assert grant.state == GrantState.PROVISIONED
    stored = secret_data(services, namespace, grant_token_secret_name(grant.id))["token"]
    token = token_of(call.body) or stored
    digest = hashlib.sha256(token.encode()).hexdigest()
    assert secret_data(services, namespace, grant_token_secret_name(grant.id))["token"] == token
    assert secret_data(services, namespace, "wml-api-env")["WML_API_TOKEN_SHA256"] == digest
    # the S3 Secret and the MinIO user agree (a crash between them was repaired)
    put(tenant_s3(services, tenant), services.settings.s3_bucket, f"tenants/{tenant}/probe")


def run_once(svc: Services, tenant: str) -> bool:
    lifecycle.run_tenant(svc, tenant, force=True)
    return False


# How each protocol's connector ends a grant, and what it hears back (only EDC's provisioner wants a callback).
END = {
    Protocol.HTTP_PROVISIONER: (EndedBy.DEPROVISION, "deprovision"),
    Protocol.SIGNALING: (EndedBy.TERMINATE, None),
    Protocol.DPS: (EndedBy.TERMINATE, None),
}


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("step", [s.name for s in steps.TEARDOWN])
def test_crash_during_teardown_then_resume(
    step: str, protocol: Protocol, services: Services, edc: tuple[EdcStub, str]
) -> None:
    stub, edc_url = edc
    consumer = new_consumer()
    tenant = tenant_of(consumer)
    body = edc_request(consumer=consumer, callback=f"{edc_url}/management/callback")
    accept(services, body, protocol)
    kind, _ = READY_NOTICE[protocol]
    # run as the re-queue does until the API answers and the connector has its answer
    wait_for(
        lambda: run_once(services, tenant) or stub.signals(kind, body["transferProcessId"]),
        120,
        interval=0.5,
        what="ready answer",
    )
    s3 = tenant_s3(services, tenant)
    put(s3, services.settings.s3_bucket, f"tenants/{tenant}/jobs/j/outputs/result")
    ended_by, notice = END[protocol]
    if protocol is Protocol.HTTP_PROVISIONER:
        store.accept_deprovision(services.sessions, request_of(ProvisionRequest.model_validate(body)), ended_by)
    else:
        assert store.end_flow(services.sessions, protocol, body["transferProcessId"], ended_by) is not None

    services.step_hook = crash_before(step)
    with pytest.raises(Crash):
        # Steps after `namespace_gone` are reached once the namespace is gone: run again as the re-queue does.
        wait_for(lambda: run_once(services, tenant), 60, what=f"the crash before {step}")

    restart_and_reconcile(
        services.settings,
        lambda svc: (
            db_tenant(svc, tenant).state == TenantState.DELETED and (notice is None or bool(stub.deprovisions()))
        ),
    )
    assert services.kube.get("v1", "Namespace", services.settings.namespace_for(tenant)) is None
    assert not user_exists(services.storage, f"wml-{tenant}")
    assert s3_denied(lambda: put(s3, services.settings.s3_bucket, f"tenants/{tenant}/again"))
    assert list(services.storage.s3.list_objects(services.settings.s3_bucket, prefix=f"tenants/{tenant}/")) == []
    assert len(stub.deprovisions(body["transferProcessId"])) == (1 if notice else 0)
    assert [g.state for g in db_grants(services, tenant)] == [GrantState.DEPROVISIONED]


def test_restart_resumes_received_grants(
    make_settings: Callable[..., ProvisionerSettings], edc: tuple[EdcStub, str]
) -> None:
    """Requests accepted but never worked on (process killed right after answering EDC)."""
    stub, edc_url = edc
    svc = build_services(make_settings())
    try:
        from provisioner.infra import db

        db.migrate(svc.engine)
        consumers = [new_consumer() for _ in range(3)]
        bodies = [edc_request(consumer=c, callback=f"{edc_url}/management/callback") for c in consumers]
        for body in bodies:
            accept(svc, body)
        restart_and_reconcile(svc.settings, lambda _: len(stub.provisions()) == 3)
        assert sorted(c.transfer_process_id for c in stub.provisions()) == sorted(
            b["transferProcessId"] for b in bodies
        )
    finally:
        cleanup(svc)
        svc.close()
