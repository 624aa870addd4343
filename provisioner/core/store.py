"""The grants and tenants tables as the core uses them: persist a connector's request (a grant), link it to its
consumer's tenant, change a data flow's grant (suspend, resume, end), find due work, and a replica's lease
("claim") on a tenant. Calls that change a grant return a :class:`GrantView` of what they wrote."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from provisioner.core import policy
from provisioner.core.identity import Identity
from provisioner.infra import audit
from provisioner.infra.models import Grant, Tenant
from provisioner.infra.settings import ProvisionerSettings
from provisioner.infra.states import (
    HOLDING_GRANT_STATES,
    EndedBy,
    EndNotice,
    GrantState,
    Handover,
    Protocol,
    TenantState,
    move,
)
from templates.names import tenant_id_for

CONFLICT_RETRIES = 5


@dataclass(frozen=True)
class TransferRequest:
    """A connector's request for a consumer's access, in the core's terms (each protocol adapter makes one)."""

    protocol: Protocol
    transfer_process_id: str
    resource_definition_id: str  # the HTTP provisioner's; signaling grants use their protocol's name
    asset_id: str
    callback_address: str
    policy: dict[str, object] | None = None
    delivery: Handover = Handover.CALLBACK


@dataclass(frozen=True)
class GrantView:
    """A grant as a store call wrote (or found) it."""

    grant_id: int
    state: GrantState
    tenant_id: str | None
    created: bool = False
    profile: str = ""  # the transfer type/profile a signaling start named
    ended_by: EndedBy | None = None  # who ended it, once it is ending or ended


def _view(grant: Grant, created: bool = False) -> GrantView:
    profile = str((grant.policy or {}).get("profile", ""))
    ended_by = EndedBy(grant.ended_by) if grant.ended_by else None
    return GrantView(grant.id, GrantState(grant.state), grant.tenant_id, created, profile, ended_by)


class UnknownTransfer(LookupError):
    pass


class TenantCollision(RuntimeError):
    """A consumer's tenant id is taken by another consumer's tenant."""


def resource_name(tenant_or_consumer: str, transfer_process_id: str, resource_definition_id: str) -> str:
    """Unique per tenant and transfer: EDC keeps the token in its vault under this name."""
    digest = hashlib.sha256(f"{transfer_process_id}\0{resource_definition_id}".encode()).hexdigest()[:12]
    return f"workflow-api-{tenant_or_consumer}-{digest}"


def backoff(settings: ProvisionerSettings, attempts: int) -> timedelta:
    seconds = min(settings.retry_max_seconds, settings.retry_base_seconds * 2 ** max(0, attempts - 1))
    return timedelta(seconds=seconds)


def link_tenant(session: Session, grant: Grant, consumer_id: str, settings: ProvisionerSettings) -> Tenant:
    """Attach ``grant`` to its consumer's tenant, creating (or reviving) the tenant row.

    The tenant id is derived from the consumer id and ``consumer_id`` is unique, so two concurrent
    requests for one consumer insert the same primary key: one wins, the other gets an IntegrityError
    and retries (see :func:`with_conflict_retry`), finding the row.
    """
    tenant = session.scalars(select(Tenant).where(Tenant.consumer_id == consumer_id)).one_or_none()
    tenant_id = tenant.id if tenant is not None else tenant_id_for(consumer_id)
    if tenant is None:
        tenant = session.get(Tenant, tenant_id)  # a concurrent request of the same consumer may just have made it
        if tenant is not None and tenant.consumer_id != consumer_id:
            # Another consumer's tenant under this id: never share it (a collision, or someone searching for one).
            raise TenantCollision(f"tenant id {tenant_id} belongs to another consumer")
    if tenant is None:
        tenant = Tenant(
            id=tenant_id,
            consumer_id=consumer_id,
            namespace=settings.namespace_for(tenant_id),
            state=TenantState.PENDING,
            generation=1,
            attempts=0,
        )
        session.add(tenant)
        session.flush()
        audit.record(session, "tenant_created", tenant_id, consumer_id=consumer_id, namespace=tenant.namespace)
    elif tenant.state in (TenantState.DELETED, TenantState.FAILED):
        move(tenant, TenantState.PENDING)
        tenant.generation += 1
        tenant.attempts = 0
        tenant.error = None
        tenant.next_attempt_at = None
        audit.record(session, "tenant_revived", tenant_id, generation=tenant.generation)
    elif tenant.state == TenantState.READY:
        move(tenant, TenantState.PENDING)
    grant.tenant_id = tenant_id
    grant.consumer_id = consumer_id
    move(grant, GrantState.PROVISIONING)
    grant.resource_name = resource_name(tenant_id, grant.transfer_process_id, grant.resource_definition_id)
    grant.attempts = 0
    grant.next_attempt_at = None
    grant.error = None
    return tenant


def _grant_of(session: Session, request: TransferRequest) -> Grant | None:
    query = select(Grant).where(
        Grant.transfer_process_id == request.transfer_process_id,
        Grant.resource_definition_id == request.resource_definition_id,
    )
    return session.scalars(query).one_or_none()


def existing_grant(sessions: sessionmaker[Session], request: TransferRequest) -> GrantView | None:
    """The grant an earlier copy of this request made, if any (EDC retries; duplicates change nothing). The one
    duplicate check: it records the duplicate."""
    with sessions.begin() as session:
        grant = _grant_of(session, request)
        if grant is None:
            return None
        audit.record(session, "provision_duplicate", grant.tenant_id, grant.id, state=grant.state)
        return _view(grant)


def accept_provision(
    sessions: sessionmaker[Session],
    settings: ProvisionerSettings,
    request: TransferRequest,
    asset_name: str,
    now: datetime,
    who: Identity,
) -> GrantView:
    """Persist a verified request the caller found no grant for (:func:`existing_grant`, :func:`find_flow`).
    A concurrent copy of it that got there first, or a concurrent first grant of the same consumer, is an
    IntegrityError: the caller looks again and retries (up to ``CONFLICT_RETRIES``)."""
    ends = policy.contract_end(request.policy, now) or now + timedelta(seconds=settings.default_lifetime_seconds)
    with sessions.begin() as session:
        grant = Grant(
            transfer_process_id=request.transfer_process_id,
            resource_definition_id=request.resource_definition_id,
            asset_id=request.asset_id,
            asset_name=asset_name,
            contract_id=who.contract_id,
            callback_address=request.callback_address,
            policy=dict(request.policy or {}),
            protocol=request.protocol,
            delivery=request.delivery,
            resource_name=resource_name("pending", request.transfer_process_id, request.resource_definition_id),
            state=GrantState.RECEIVED,
            expires_at=ends,
            attempts=0,
        )
        session.add(grant)
        session.flush()
        audit.record(
            session,
            "provision_received",
            None,
            grant.id,
            transfer_process_id=request.transfer_process_id,
            asset_id=request.asset_id,
            expires_at=ends.isoformat(),
        )
        link_tenant(session, grant, who.consumer_id, settings)
        audit.record(session, "grant_linked", grant.tenant_id, grant.id, consumer_id=who.consumer_id, source=who.source)
        return _view(grant, created=True)


def known_transfer(sessions: sessionmaker[Session], transfer_process_id: str) -> bool:
    """Whether a request for this transfer was accepted before."""
    with sessions.begin() as session:
        query = select(Grant.id).where(Grant.transfer_process_id == transfer_process_id)
        return session.scalars(query).first() is not None


def accept_deprovision(
    sessions: sessionmaker[Session], request: TransferRequest, ended_by: EndedBy = EndedBy.DEPROVISION
) -> GrantView:
    """Mark the grant(s) of this transfer for removal. Unknown transfer: :class:`UnknownTransfer`."""
    with sessions.begin() as session:
        grants = list(
            session.scalars(
                select(Grant).where(
                    Grant.transfer_process_id == request.transfer_process_id,
                    Grant.resource_definition_id == request.resource_definition_id,
                )
            )
        ) or list(session.scalars(select(Grant).where(Grant.transfer_process_id == request.transfer_process_id)))
        if not grants:
            raise UnknownTransfer(request.transfer_process_id)
        for grant in grants:
            if grant.state in (GrantState.DEPROVISIONING, GrantState.DEPROVISIONED):
                audit.record(session, "deprovision_duplicate", grant.tenant_id, grant.id, state=grant.state)
                continue
            grant.ended_by = ended_by
            if grant.tenant_id is None:
                move(grant, GrantState.DEPROVISIONED)
            else:
                move(grant, GrantState.DEPROVISIONING)
                grant.attempts = 0
                grant.next_attempt_at = None
            audit.record(session, "deprovision_received", grant.tenant_id, grant.id, state=grant.state)
        return _view(grants[0])


def due_work(sessions: sessionmaker[Session], now: datetime) -> tuple[list[int], list[str]]:
    """(grants waiting for their consumer, tenants with something to do) whose retry time has come."""
    due = or_(Grant.next_attempt_at.is_(None), Grant.next_attempt_at <= now)
    with sessions() as session:
        received = list(session.scalars(select(Grant.id).where(Grant.state == GrantState.RECEIVED, due)))
        tenant_ids = set(
            session.scalars(
                select(Grant.tenant_id).where(
                    Grant.tenant_id.is_not(None),
                    or_(
                        Grant.state.in_([GrantState.PROVISIONING, GrantState.DEPROVISIONING, GrantState.READY]),
                        Grant.state.in_(HOLDING_GRANT_STATES) & (Grant.expires_at <= now),
                        Grant.state.in_([GrantState.DEPROVISIONED, GrantState.FAILED])
                        & (Grant.deprovision_callback == EndNotice.DUE),
                    ),
                    due,
                )
            )
        )
        tenant_due = or_(Tenant.next_attempt_at.is_(None), Tenant.next_attempt_at <= now)
        tenant_ids |= set(
            session.scalars(
                select(Tenant.id).where(Tenant.state.in_([TenantState.PENDING, TenantState.TEARING_DOWN]), tenant_due)
            )
        )
    return received, sorted(t for t in tenant_ids if t)


def _flow(session: Session, protocol: Protocol, transfer_process_id: str, lock: bool = False) -> Grant | None:
    """A signaling data flow's grant: one per process and protocol; never another protocol's grant.
    ``lock``: the row is held until the transaction ends (a state change based on what was read)."""
    query = select(Grant).where(
        Grant.protocol == protocol,
        Grant.transfer_process_id == transfer_process_id,
        Grant.resource_definition_id == str(protocol),
    )
    return session.scalars(query.with_for_update() if lock else query).one_or_none()


def find_flow(
    sessions: sessionmaker[Session], protocol: Protocol, transfer_process_id: str, duplicate: bool = False
) -> GrantView | None:
    """The grant of a signaling data flow. ``duplicate``: the caller's own insert of it lost to a concurrent copy of
    the same start, which is recorded as such (as :func:`existing_grant` records a provision's)."""
    with sessions.begin() as session:
        grant = _flow(session, protocol, transfer_process_id)
        if grant is None:
            return None
        if duplicate:
            audit.record(session, "provision_duplicate", grant.tenant_id, grant.id, state=grant.state)
        return _view(grant)


def suspend(sessions: sessionmaker[Session], protocol: Protocol, transfer_process_id: str) -> GrantView | None:
    """Revoke a data flow's token and keep its tenant (signaling suspend). None for an unknown flow."""
    with sessions.begin() as session:
        grant = _flow(session, protocol, transfer_process_id, lock=True)
        if grant is None:
            return None
        if grant.state in (GrantState.PROVISIONING, GrantState.READY, GrantState.PROVISIONED):
            move(grant, GrantState.SUSPENDED)
            _tenant_needs_run(session, grant.tenant_id)
            audit.record(session, "grant_suspended", grant.tenant_id, grant.id)
        return _view(grant)


def resume(
    sessions: sessionmaker[Session], protocol: Protocol, transfer_process_id: str, delivery: Handover
) -> GrantView | None:
    """A suspended data flow starts again with a new token (signaling start after suspend, DPS resume)."""
    with sessions.begin() as session:
        grant = _flow(session, protocol, transfer_process_id, lock=True)
        if grant is None:
            return None
        if grant.state == GrantState.SUSPENDED:
            move(grant, GrantState.PROVISIONING)
            grant.delivery = delivery
            grant.attempts = 0
            grant.next_attempt_at = None
            _tenant_needs_run(session, grant.tenant_id)
            audit.record(session, "grant_resumed", grant.tenant_id, grant.id)
        return _view(grant)


def respond_later(sessions: sessionmaker[Session], grant_id: int) -> bool:
    """A synchronous start stops waiting: the endpoint goes by callback. False when the grant was handed out
    meanwhile (or is no longer starting)."""
    with sessions.begin() as session:
        grant = session.get(Grant, grant_id)
        if grant is None or grant.state not in (GrantState.PROVISIONING, GrantState.READY):
            return False
        grant.delivery = Handover.CALLBACK
        return True


def _tenant_needs_run(session: Session, tenant_id: str | None) -> None:
    """A grant changed: the tenant applies it on its next run (durably: a restart before the kick loses nothing,
    and a failed tenant gets another chance, as a new grant gives it)."""
    tenant = session.get(Tenant, tenant_id, with_for_update=True) if tenant_id else None
    if tenant is None:
        return
    if tenant.state in (TenantState.READY, TenantState.FAILED):
        move(tenant, TenantState.PENDING)
        tenant.attempts = 0
    tenant.next_attempt_at = None


def end_flow(
    sessions: sessionmaker[Session], protocol: Protocol, transfer_process_id: str, ended_by: EndedBy
) -> GrantView | None:
    """Terminate or complete a data flow (idempotent). None for an unknown flow."""
    with sessions.begin() as session:
        grant = _flow(session, protocol, transfer_process_id, lock=True)
        if grant is None:
            return None
        if grant.state in (GrantState.DEPROVISIONING, GrantState.DEPROVISIONED):
            audit.record(session, "deprovision_duplicate", grant.tenant_id, grant.id, state=grant.state)
            return _view(grant)
        grant.ended_by = ended_by
        move(grant, GrantState.DEPROVISIONING if grant.tenant_id else GrantState.DEPROVISIONED)
        grant.attempts = 0
        grant.next_attempt_at = None
        _tenant_needs_run(session, grant.tenant_id)
        audit.record(session, "deprovision_received", grant.tenant_id, grant.id, state=grant.state, ended_by=ended_by)
        return _view(grant)


class TenantClaim(StrEnum):
    CLAIMED = "claimed"  # this replica may work on the tenant until the claim's time
    HELD = "held"  # another replica works on it
    GONE = "gone"  # no such tenant


def claim_tenant(
    sessions: sessionmaker[Session], tenant_id: str, holder: str, now: datetime, seconds: float
) -> TenantClaim:
    """Claim (or extend) the right to work on a tenant until ``now + seconds``: one atomic conditional UPDATE, so
    of two replicas at most one wins. A claim whose time has passed (its replica died) is free."""
    until = now + timedelta(seconds=seconds)
    free = or_(Tenant.claimed_by.is_(None), Tenant.claimed_by == holder, Tenant.claim_until < now)
    with sessions.begin() as session:
        # updated_at kept: a claim is not a change of the tenant (the sweeper reads how long it has been deleted).
        done = session.execute(
            update(Tenant)
            .where(Tenant.id == tenant_id, free)
            .values(claimed_by=holder, claim_until=until, updated_at=Tenant.updated_at)
            .execution_options(synchronize_session=False)
        )
        if getattr(done, "rowcount", 0):
            return TenantClaim.CLAIMED
        exists = session.scalar(select(Tenant.id).where(Tenant.id == tenant_id))
        return TenantClaim.HELD if exists else TenantClaim.GONE


def release_tenant(sessions: sessionmaker[Session], tenant_id: str, holder: str) -> None:
    with sessions.begin() as session:
        session.execute(
            update(Tenant)
            .where(Tenant.id == tenant_id, Tenant.claimed_by == holder)
            .values(claimed_by=None, claim_until=None, updated_at=Tenant.updated_at)
            .execution_options(synchronize_session=False)
        )
