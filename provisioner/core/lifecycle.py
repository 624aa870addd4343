"""The tenant lifecycle core, the same for every protocol: decide what a tenant needs (:func:`decide`), run the
steps of :mod:`provisioner.steps` that :mod:`provisioner.core.plan` picks, then hand results to connectors through
:mod:`provisioner.core.delivery`.

``run_tenant`` returns when the tenant should be looked at again (seconds), or None; the scheduler re-queues
it. Step outcomes are typed (:mod:`provisioner.infra.errors`): ``NotYet`` re-queues without counting an attempt,
anything else counts an attempt with exponential backoff until ``work_max_attempts``, then the tenant fails
and its connectors are told in their protocol's terms.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from provisioner.core import delivery, identity
from provisioner.core.plan import Recall, RunMemory, plan_run, widen
from provisioner.core.store import CONFLICT_RETRIES, TenantCollision, backoff, link_tenant
from provisioner.infra import audit
from provisioner.infra.connector import EdcLookupError
from provisioner.infra.errors import NotYet, PermanentError, TemporaryError
from provisioner.infra.models import Grant, Tenant
from provisioner.infra.services import Services
from provisioner.infra.states import (
    ACTIVE_GRANT_STATES,
    HOLDING_GRANT_STATES,
    EndedBy,
    GrantState,
    TenantState,
    move,
)
from provisioner.steps import APPLY, TEARDOWN, Snapshot, StepContext, StepFailed, run_steps
from templates.names import api_s3_user

log = logging.getLogger(__name__)


class Mode(StrEnum):
    APPLY = "apply"  # create or update the tenant's objects
    TEARDOWN = "teardown"  # no grant holds the tenant any more
    DELIVER = "deliver"  # objects are as wanted: only answers to connectors may be due
    IDLE = "idle"  # failed or deleted: nothing to do until something changes


@dataclass(frozen=True)
class Decision:
    mode: Mode
    snap: Snapshot


# --- identity of grants received before they could be verified --------------------------------------------


def resolve_grant(svc: Services, grant_id: int) -> str | None:
    """Find the consumer of a grant received before it could be verified, by the one rule of
    :mod:`provisioner.core.identity`, and attach it to its tenant. Returns the tenant id."""
    with svc.sessions() as session:
        grant = session.get(Grant, grant_id)
        if grant is None or grant.state != GrantState.RECEIVED:
            return grant.tenant_id if grant else None
        grant_policy, transfer, asset_id = grant.policy, grant.transfer_process_id, grant.asset_id
    who: identity.Identity | None = None
    error = ""
    try:
        who = identity.resolve(svc, transfer, asset_id, grant_policy)
    except EdcLookupError as exc:  # EdcRejected included: a grant whose consumer is unknown never provisions
        error = str(exc)
    for attempt in range(CONFLICT_RETRIES):
        try:
            with svc.sessions.begin() as session:
                grant = session.get(Grant, grant_id)
                if grant is None or grant.state != GrantState.RECEIVED:
                    return grant.tenant_id if grant else None
                if who is None:
                    grant.attempts += 1
                    grant.error = error or "no consumer id found"
                    if grant.attempts >= svc.settings.work_max_attempts:
                        move(grant, GrantState.FAILED)
                        audit.record(session, "grant_failed", None, grant.id, error=grant.error)
                    else:
                        grant.next_attempt_at = svc.clock() + backoff(svc.settings, grant.attempts)
                        audit.record(session, "grant_retry", None, grant.id, error=grant.error)
                    return None
                grant.contract_id = who.contract_id
                try:
                    link_tenant(session, grant, who.consumer_id, svc.settings)
                except TenantCollision as exc:
                    log.error("grant %s: %s", grant.id, exc)
                    move(grant, GrantState.FAILED)
                    grant.error = str(exc)
                    return None
                audit.record(
                    session, "grant_linked", grant.tenant_id, grant.id, consumer_id=who.consumer_id, source=who.source
                )
                return grant.tenant_id
        except IntegrityError:
            if attempt == CONFLICT_RETRIES - 1:
                raise
    return None


# --- the tenant --------------------------------------------------------------------------------------------


def run_tenant(
    svc: Services, tenant_id: str, force: bool = False, due: bool = False, memory: RunMemory | None = None
) -> float | None:
    """Bring one tenant to what its grants call for. Returns seconds until it wants another run, or None.

    ``due``: run now, whatever the backoff says (a re-queue, a request that changed the tenant's grants);
    ``force``: also revive a failed tenant (an operator's retry); ``memory``: what the worker remembers of the
    tenant's last runs, from which :func:`provisioner.core.plan.plan_run` decides which steps run."""
    now = svc.clock().timestamp()
    try:
        for _ in range(3):  # teardown, then re-provision if a new grant arrived meanwhile
            decision = decide(svc, tenant_id, force, due)
            if decision is None:  # gone, or not due yet (a wait being timed): a resume point stays
                return None
            if decision.mode is Mode.TEARDOWN:
                if memory is not None:
                    memory.drop(tenant_id)  # a tenant made again is made whole
                run_steps(StepContext(svc, decision.snap), tuple(enumerate(TEARDOWN)))
                force = True
                continue
            if decision.mode is Mode.APPLY:
                _apply(svc, decision.snap, force, now, memory)
            break
        if memory is not None:
            memory.forget(tenant_id)
        return delivery.deliver(svc, tenant_id)
    except StepFailed as exc:
        if memory is not None and not isinstance(exc.cause, NotYet):
            memory.drop(tenant_id)
        return _step_failed(svc, tenant_id, exc.step, exc.cause)
    except NotYet as exc:
        return _not_yet(svc, tenant_id, exc)


def _apply(svc: Services, snap: Snapshot, force: bool, now: float, memory: RunMemory | None) -> None:
    """Run the planned provisioning steps of ``snap`` and tell the memory how the run went."""
    recall = memory.recall(snap.tenant_id) if memory is not None else Recall()
    # Without a memory (a one-off run) every run is a whole pass.
    plan = plan_run(APPLY, snap, recall, now, force or memory is None, memory.max_age if memory else 0.0)
    try:
        run_steps(StepContext(svc, snap), plan.steps, lambda index, made: widen(APPLY, plan, index, made))
    except StepFailed as exc:
        if memory is not None and isinstance(exc.cause, NotYet):
            memory.waiting(snap, exc.index, now, whole=plan.whole)
        raise
    if memory is not None and not plan.grants_only:
        memory.settled(snap, now, plan.whole)


def decide(svc: Services, tenant_id: str, force: bool, due: bool = False) -> Decision | None:
    """What the tenant needs, from its rows and the injected clock; expired grants start ending here."""
    now = svc.clock()
    with svc.sessions.begin() as session:
        tenant = session.get(Tenant, tenant_id)
        if tenant is None:
            return None
        if not (force or due) and tenant.next_attempt_at is not None and tenant.next_attempt_at > now:
            return None
        grants = list(session.scalars(select(Grant).where(Grant.tenant_id == tenant_id)))
        for grant in grants:
            if grant.state in HOLDING_GRANT_STATES and grant.expires_at is not None and grant.expires_at <= now:
                move(grant, GrantState.DEPROVISIONING)
                grant.ended_by = EndedBy.EXPIRY
                audit.record(session, "grant_expired", tenant_id, grant.id, expires_at=grant.expires_at.isoformat())
        holding = [g for g in grants if g.state in HOLDING_GRANT_STATES]
        active = [g for g in holding if g.state in ACTIVE_GRANT_STATES]
        ending = [g for g in grants if g.state == GrantState.DEPROVISIONING]
        if tenant.state == TenantState.FAILED and not force and not ending:
            mode = Mode.IDLE  # a grant ending (a terminate, a deprovision) still gets its teardown
        elif tenant.state == TenantState.TEARING_DOWN or (not holding and tenant.state != TenantState.DELETED):
            if move(tenant, TenantState.TEARING_DOWN):
                tenant.attempts = 0
                reason = ",".join(sorted({g.ended_by or "none" for g in ending})) or "no grants"
                audit.record(session, "teardown_started", tenant_id, reason=reason)
            mode = Mode.TEARDOWN
        elif tenant.state == TenantState.DELETED and not holding:
            mode = Mode.IDLE
        elif tenant.state == TenantState.DELETED:
            move(tenant, TenantState.PENDING)
            tenant.generation += 1
            mode = Mode.APPLY
        elif tenant.state != TenantState.READY or ending or any(g.state == GrantState.PROVISIONING for g in grants):
            if tenant.state == TenantState.FAILED:
                move(tenant, TenantState.PENDING)
                tenant.attempts = 0
            elif tenant.state == TenantState.READY:
                move(tenant, TenantState.PENDING)
            mode = Mode.APPLY
        else:
            mode = Mode.DELIVER
        tenant.expires_at = max((g.expires_at for g in holding if g.expires_at), default=None)
        contract = next((g.contract_id for g in sorted(active, key=lambda g: g.id) if g.contract_id), "") or ""
        snap = Snapshot(
            tenant_id=tenant_id,
            namespace=tenant.namespace,
            consumer_id=tenant.consumer_id,
            s3_user=api_s3_user(tenant_id),
            grant_ids=tuple(g.id for g in [*holding, *ending]),
            grant_states=tuple((g.id, g.state) for g in grants),
            active_grant_ids=tuple(sorted(g.id for g in active)),
            grant_assets=tuple(sorted((g.id, g.asset_name) for g in active)),
            asset_names=tuple(sorted({g.asset_name for g in holding})),
            contract_id=contract,
        )
        return Decision(mode, snap)


def _not_yet(svc: Services, tenant_id: str, exc: NotYet) -> float:
    with svc.sessions.begin() as session:
        tenant = session.get(Tenant, tenant_id)
        if tenant is not None:
            tenant.next_attempt_at = svc.clock() + timedelta(seconds=exc.delay if exc.delay is not None else 1.0)
            tenant.error = str(exc)
    return exc.delay if exc.delay is not None else 1.0


def _step_failed(svc: Services, tenant_id: str, step: str, cause: Exception) -> float | None:
    if isinstance(cause, NotYet):
        return _not_yet(svc, tenant_id, cause)
    error = f"{type(cause).__name__}: {cause}"[:2000]
    svc.metrics.step_failures.labels(step=step).inc()
    with svc.sessions.begin() as session:
        tenant = session.get(Tenant, tenant_id)
        if tenant is None:
            return None
        tenant.attempts += 1
        tenant.error = error
        permanent = isinstance(cause, PermanentError) or tenant.attempts >= svc.settings.work_max_attempts
        if permanent:
            if tenant.state != TenantState.FAILED:
                move(tenant, TenantState.FAILED)
            audit.record(session, "tenant_failed", tenant_id, step=step, error=error, attempts=tenant.attempts)
            log.error("tenant %s failed after %s attempts at %s: %s", tenant_id, tenant.attempts, step, error)
            delivery.fail_waiting_grants(svc, session, tenant_id, f"the tenant could not be provisioned ({step})")
            return 0.0  # send the failure notices now
        delay = backoff(svc.settings, tenant.attempts)
        if isinstance(cause, TemporaryError) and cause.delay is not None:
            delay = timedelta(seconds=cause.delay)
        tenant.next_attempt_at = svc.clock() + delay
        audit.record(session, "step_failed", tenant_id, step=step, error=error, attempts=tenant.attempts)
        log.warning("tenant %s: step %s failed (attempt %s): %s", tenant_id, step, tenant.attempts, error)
        return delay.total_seconds()


def force_teardown(svc: Services, tenant_id: str) -> bool:
    with svc.sessions.begin() as session:
        tenant = session.get(Tenant, tenant_id)
        if tenant is None:
            return False
        for grant in session.scalars(select(Grant).where(Grant.tenant_id == tenant_id)):
            if grant.state in (*HOLDING_GRANT_STATES, GrantState.RECEIVED, GrantState.FAILED):
                move(grant, GrantState.DEPROVISIONING)
                grant.ended_by = EndedBy.ADMIN
        if tenant.state != TenantState.DELETED:
            move(tenant, TenantState.TEARING_DOWN)
            tenant.next_attempt_at = None
        audit.record(session, "teardown_forced", tenant_id)
    return True
