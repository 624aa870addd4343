"""Data flows: waiting for a started flow's tenant (signaling and DPS starts and resumes, by
:mod:`provisioner.core.grants`).

A start creates (or finds) the flow's grant and waits, up to ``signaling_start_wait_seconds``, for its tenant:
ready in time, the answer carries the endpoint and a fresh token (delivery *response*); not ready, the grant
switches to delivery *callback* and the adapter answers "provisioning"/``STARTING``, the lifecycle core then
calls the control plane back once the tenant is ready. The wait polls the database, so it works whichever
process runs the tenant's steps.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

from provisioner.core import store
from provisioner.core.delivery import mark_provisioned
from provisioner.core.scheduler import Scheduler
from provisioner.infra.kube import KubeError
from provisioner.infra.models import Grant
from provisioner.infra.secrets import grant_token
from provisioner.infra.services import Services
from provisioner.infra.states import GrantState


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
    profile: str = ""  # the transfer type/profile the flow's start named (DPS resume renders it)


async def await_ready(
    svc: Services,
    worker: Scheduler,
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
                token = await asyncio.to_thread(
                    grant_token, svc.kube, svc.settings.namespace_for(grant.tenant_id), grant_id
                )
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
