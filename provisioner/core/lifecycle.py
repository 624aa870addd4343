"""The tenant lifecycle core, the same for every protocol: decide what a tenant needs, run the steps of
:mod:`provisioner.steps`, then hand results to connectors through :mod:`provisioner.core.delivery`.

``run_tenant`` returns when the tenant should be looked at again (seconds), or None; the scheduler re-queues
it. Step outcomes are typed (:mod:`provisioner.infra.errors`): ``NotYet`` re-queues without counting an attempt,
anything else counts an attempt with exponential backoff until ``work_max_attempts``, then the tenant fails
and its connectors are told in their protocol's terms.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, replace
from datetime import timedelta
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from provisioner.core import delivery, identity
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


class Resumes:
    """What a worker remembers of its tenants' last runs, so the next run does less. Kept in the worker's memory
    only: a restart, a change of more than grants, or ``max_age`` seconds mean a whole pass again, which also repairs
    anything changed behind our back meanwhile.

    - Where a run stopped to wait (a resumable step raised NotYet): the next run of the same snapshot starts there.
      A new tenant is re-run every quarter second while its API starts, and a whole pass (some 30 Kubernetes and
      MinIO calls) took CPU those pods need.
    - The snapshot of the last whole pass that went through: a run whose snapshot differs from it only in grants
      (a new grant of an asset the tenant has, a suspend, a resume, a terminate) runs only the steps marked
      ``grants``. A consumer who already has a tenant waits for its own token, not for every object re-applied.
    """

    def __init__(self, max_age: float = 30.0) -> None:
        self.max_age = max_age
        self._at: dict[str, tuple[Snapshot, int, float]] = {}
        self._settled: dict[str, tuple[Snapshot, float]] = {}
        self._lock = threading.Lock()  # the worker's threads run different tenants at once

    def start(self, snap: Snapshot, now: float) -> int:
        with self._lock:
            found = self._at.get(snap.tenant_id)
        if found is None or found[0] != snap or now - found[2] > self.max_age:
            return 0
        return found[1]

    def grants_only(self, snap: Snapshot, now: float) -> bool:
        """Only grants changed since the last whole pass went through, and that pass is recent."""
        with self._lock:
            found = self._settled.get(snap.tenant_id)
        if found is None or now - found[1] > self.max_age:
            return False
        return _beyond_grants(found[0]) == _beyond_grants(snap)

    def waiting(self, snap: Snapshot, index: int, now: float, whole: bool) -> None:
        """The run of ``snap`` waits at step ``index``. Its age counts from the whole pass it stands on: ``whole``,
        this run; else the resumed run's, or (a run of grants only) the last whole pass that went through."""
        with self._lock:
            previous = self._at.get(snap.tenant_id)
            settled = self._settled.get(snap.tenant_id)
            if whole:
                since = now
            elif previous is not None and previous[0] == snap:
                since = previous[2]
            elif settled is not None:
                since = settled[1]
            else:
                since = now
            # points of tenants that went away are dropped once stale
            self._at = {k: v for k, v in self._at.items() if now - v[2] <= self.max_age}
            self._at[snap.tenant_id] = (snap, index, since)

    def settled(self, snap: Snapshot, now: float, whole: bool) -> None:
        """A pass of ``snap`` went through: ``whole``, or resumed from a whole one (whose age it keeps)."""
        with self._lock:
            found = self._at.get(snap.tenant_id)
            since = found[2] if not whole and found is not None and found[0] == snap else now
            self._settled = {k: v for k, v in self._settled.items() if now - v[1] <= self.max_age}
            self._settled[snap.tenant_id] = (snap, since)

    def forget(self, tenant_id: str) -> None:
        """The resume point only (a run went through)."""
        with self._lock:
            self._at.pop(tenant_id, None)

    def drop(self, tenant_id: str) -> None:
        """Everything (a run failed, the tenant was torn down): the next run is a whole pass."""
        with self._lock:
            self._at.pop(tenant_id, None)
            self._settled.pop(tenant_id, None)


def _beyond_grants(snap: Snapshot) -> Snapshot:
    return replace(snap, grant_ids=(), active_grant_ids=(), grant_states=())


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
    svc: Services, tenant_id: str, force: bool = False, due: bool = False, resumes: Resumes | None = None
) -> float | None:
    """Bring one tenant to what its grants call for. Returns seconds until it wants another run, or None.

    ``due``: run now, whatever the backoff says (a re-queue, a request that changed the tenant's grants);
    ``force``: also revive a failed tenant (an operator's retry); ``resumes``: where waits may be resumed."""
    now = svc.clock().timestamp()
    try:
        for _ in range(3):  # teardown, then re-provision if a new grant arrived meanwhile
            decision = decide(svc, tenant_id, force, due)
            if decision is None:  # gone, or not due yet (a wait being timed): a resume point stays
                return None
            if decision.mode is Mode.TEARDOWN:
                if resumes is not None:
                    resumes.drop(tenant_id)  # a tenant made again is made whole
                run_steps(StepContext(svc, decision.snap), TEARDOWN)
                force = True
                continue
            if decision.mode is Mode.APPLY:
                snap = decision.snap
                # an operator's retry (force) always gets a whole pass
                start = resumes.start(snap, now) if resumes is not None and not force else 0
                grants_only = resumes is not None and not force and resumes.grants_only(snap, now)
                whole = start == 0 and not grants_only
                try:
                    run_steps(StepContext(svc, snap, grants_only=grants_only), APPLY, start)
                except StepFailed as exc:
                    if resumes is not None and isinstance(exc.cause, NotYet) and APPLY[exc.index].resumable:
                        resumes.waiting(snap, exc.index, now, whole=whole)
                    raise
                if resumes is not None and not grants_only:
                    resumes.settled(snap, now, whole)
            break
        if resumes is not None:
            resumes.forget(tenant_id)
        return delivery.deliver(svc, tenant_id)
    except StepFailed as exc:
        if resumes is not None and not isinstance(exc.cause, NotYet):
            resumes.drop(tenant_id)
        return _step_failed(svc, tenant_id, exc.step, exc.cause)
    except NotYet as exc:
        return _not_yet(svc, tenant_id, exc)


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
            s3_user=f"wml-{tenant_id}",
            grant_ids=tuple(g.id for g in [*holding, *ending]),
            grant_states=tuple((g.id, g.state) for g in grants),
            active_grant_ids=tuple(sorted(g.id for g in active)),
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
