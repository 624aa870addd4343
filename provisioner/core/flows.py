"""Data flows: what both signaling dialects do on start, suspend, resume and terminate, in the core's terms.

A start creates (or finds) the flow's grant and waits, up to ``signaling_start_wait_seconds``, for its tenant:
ready in time, the answer carries the endpoint and a fresh token (delivery *response*); not ready, the grant
switches to delivery *callback* and the adapter answers "provisioning"/``STARTING``, the lifecycle core then
calls the control plane back once the tenant is ready. The wait polls the database, so it works whichever
process runs the tenant's steps.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from provisioner.core import identity, store
from provisioner.core.delivery import mark_provisioned
from provisioner.core.identity import Identity
from provisioner.core.scheduler import Worker
from provisioner.infra.connector import EdcLookupError, EdcRejected
from provisioner.infra.kube import KubeError
from provisioner.infra.models import Grant
from provisioner.infra.services import Services
from provisioner.infra.states import Delivery, EndedBy, GrantState, Protocol
from provisioner.steps import grant_token

log = logging.getLogger(__name__)


class Refused(Exception):
    """A start the core will not take: the adapter renders ``status`` and ``reason`` in its dialect."""

    def __init__(self, status: int, reason: str, retry: bool = False) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.retry = retry  # a moment's outage (database, management API): the caller may send it again


class StartResult(StrEnum):
    READY = "ready"  # endpoint and token in hand
    PENDING = "pending"  # will be delivered by callback
    FAILED = "failed"  # the grant can never be served
    ENDED = "ended"  # the flow was terminated before: a new start is not a restart


@dataclass(frozen=True)
class Started:
    result: StartResult
    grant_id: int
    created: bool
    endpoint: str = ""
    token: str = ""
    error: str = ""


def claim(protocol: Protocol, process_id: str, dataset_id: str, callback: str, profile: str = "") -> store.Claim:
    return store.Claim(
        protocol=protocol,
        transfer_process_id=process_id,
        resource_definition_id=str(protocol),
        asset_id=dataset_id,
        callback_address=callback,
        policy={"profile": profile} if profile else None,
        delivery=Delivery.RESPONSE,
    )


async def start(
    svc: Services,
    worker: Worker,
    request: store.Claim,
    consumer: str,
    exclusive: bool,
    gone: Callable[[], Awaitable[bool]] | None = None,
) -> Started:
    """A control plane's start, whatever its dialect: the asset, the consumer, the grant, the wait.
    ``exclusive``: a second start of the same process is refused (DPS) rather than answered again (dialect A).
    Raises :class:`Refused`."""
    log_id = request.transfer_process_id
    try:
        if exclusive and await asyncio.to_thread(store.find_grant, svc.sessions, request.protocol, log_id) is not None:
            raise Refused(409, f"a data flow for process {log_id!r} exists already")
        asset = await asyncio.to_thread(svc.catalogue.resolve, request.asset_id, svc.sessions)
        if asset is None:
            raise Refused(404, f"dataset {request.asset_id!r} is not offered by this data plane")
        try:
            who = await asyncio.to_thread(identity.resolve_flow, svc, log_id, request.asset_id, consumer)
        except EdcRejected as exc:
            raise Refused(403, f"not verified with the connector: {exc}") from None
        except EdcLookupError as exc:
            log.warning("flow %s not verified yet: %s", log_id, exc)
            raise Refused(503, "the connector's management API cannot be asked yet", retry=True) from None
        try:
            grant, created = await asyncio.to_thread(accept_start, svc, request, asset.name, who)
        except store.TenantCollision:
            raise Refused(
                403, "this consumer's tenant id is taken by another consumer; the operator is alerted"
            ) from None
        if exclusive and not created:  # a concurrent duplicate won the insert
            raise Refused(409, f"a data flow for process {log_id!r} exists already")
        if grant.tenant_id:
            worker.kick_tenant(grant.tenant_id, due=True)
        return await await_ready(svc, worker, grant.id, created, svc.settings.signaling_start_wait_seconds, gone)
    except (DBAPIError, SQLAlchemyError) as exc:
        log.warning("database unavailable: %s", exc)
        raise Refused(503, "state store unavailable, retry later", retry=True) from None


def accept_start(svc: Services, request: store.Claim, asset_name: str, who: Identity) -> tuple[Grant, bool]:
    """Persist the flow (idempotent per process); a suspended flow resumes. Returns (grant, created)."""
    existing = store.find_grant(svc.sessions, request.protocol, request.transfer_process_id)
    if existing is None:
        accepted = store.accept_provision(svc.sessions, svc.settings, request, asset_name, svc.clock(), who)
        grant = store.find_grant(svc.sessions, request.protocol, request.transfer_process_id)
        assert grant is not None
        return grant, accepted.created
    if existing.state == GrantState.SUSPENDED:
        resumed = store.resume(svc.sessions, request.protocol, request.transfer_process_id, Delivery.RESPONSE)
        assert resumed is not None
        return resumed, False
    return existing, False


async def await_ready(
    svc: Services,
    worker: Worker,
    grant_id: int,
    created: bool,
    wait: float,
    gone: Callable[[], Awaitable[bool]] | None = None,
) -> Started:
    """Wait for the grant's tenant, then answer with its endpoint and token, or hand delivery to callbacks.

    ``gone`` tells whether the caller hung up: then nothing is handed out in an answer nobody reads, and the
    endpoint goes by callback instead. The wait ends by ``wait`` (plus a moment for a grant that just got ready).
    """
    deadline = time.monotonic() + wait
    last_look = deadline + 2.0
    pause = 0.02
    while True:
        grant = await asyncio.to_thread(_load, svc, grant_id)
        if grant is None:
            return Started(StartResult.FAILED, grant_id, created, error="the flow vanished")
        if grant.state == GrantState.FAILED:
            return Started(StartResult.FAILED, grant_id, created, error=grant.error or "provisioning failed")
        if grant.state in (GrantState.DEPROVISIONING, GrantState.DEPROVISIONED):
            return Started(StartResult.ENDED, grant_id, created)
        if grant.state == GrantState.SUSPENDED:  # suspended while starting: nothing to hand out until resumed
            return Started(StartResult.PENDING, grant_id, created)
        if grant.state in (GrantState.READY, GrantState.PROVISIONED) and grant.tenant_id:
            try:
                token = await asyncio.to_thread(grant_token, svc, svc.settings.namespace_for(grant.tenant_id), grant_id)
            except KubeError:  # Kubernetes unreachable: not ready yet; at the deadline the callback path takes over
                token = None
            if token is not None and not (gone is not None and await gone()):
                await asyncio.to_thread(_handed_out, svc, grant_id)
                return Started(
                    StartResult.READY,
                    grant_id,
                    created,
                    endpoint=svc.settings.api_url_for(grant.tenant_id),
                    token=token,
                )
        now = time.monotonic()
        stop = now >= deadline or (gone is not None and await gone())
        if stop and (await asyncio.to_thread(store.respond_later, svc.sessions, grant_id) or now >= last_look):
            if grant.tenant_id:
                worker.kick_tenant(grant.tenant_id, due=True)
            return Started(StartResult.PENDING, grant_id, created)
        if grant.tenant_id:
            await worker.ran(grant.tenant_id, pause)
        else:
            await asyncio.sleep(pause)
        pause = min(pause * 1.5, 0.25)


def _load(svc: Services, grant_id: int) -> Grant | None:
    with svc.sessions() as session:
        return session.get(Grant, grant_id)


def _handed_out(svc: Services, grant_id: int) -> None:
    with svc.sessions.begin() as session:
        grant = session.get(Grant, grant_id)
        if grant is not None and grant.state == GrantState.READY:
            mark_provisioned(svc, session, grant, "answered in the start response")


def end(svc: Services, protocol: Protocol, process_id: str, ended_by: EndedBy) -> Grant | None:
    """Terminate or complete a flow: its token is revoked and, when it was the last, the tenant torn down."""
    return store.end_flow(svc.sessions, protocol, process_id, ended_by)


def stop(svc: Services, protocol: Protocol, process_id: str, ended_by: EndedBy | None) -> Grant | None:
    """Suspend (``ended_by`` None) or end a flow; None for an unknown one."""
    if ended_by is None:
        return store.suspend(svc.sessions, protocol, process_id)
    return end(svc, protocol, process_id, ended_by)
