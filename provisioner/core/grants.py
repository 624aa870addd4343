"""The one entry of the core every protocol adapter calls, in the core's terms: the HTTP provisioner's
provision and deprovision, the signaling protocols' start, suspend, resume and end of a data flow.

An adapter only translates: it makes a :class:`~provisioner.core.store.TransferRequest` of its connector's
message, calls one function here and renders the outcome (a :class:`~provisioner.core.store.GrantView`, a
:class:`~provisioner.core.flows.Started`) or the :class:`Refused` it raises in its own wire shapes. Everything
else (the catalogue, the consumer's identity, the store, the worker's kicks) happens here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from enum import StrEnum

from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError

from provisioner.core import flows, identity, store
from provisioner.core.flows import Started
from provisioner.core.identity import Identity
from provisioner.core.scheduler import Scheduler
from provisioner.core.store import CONFLICT_RETRIES, GrantView, TransferRequest
from provisioner.infra.connector import ENDING_STATES, EdcLookupError, EdcRejected
from provisioner.infra.services import Services
from provisioner.infra.states import EndedBy, GrantState, Handover, Protocol

log = logging.getLogger(__name__)


class Refusal(StrEnum):
    NOT_OFFERED = "not_offered"  # the asset is not in the catalogue
    NOT_VERIFIED = "not_verified"  # the connector's records contradict the request: never retried
    UNVERIFIABLE = "unverifiable"  # the connector's management API cannot be asked now
    TENANT_TAKEN = "tenant_taken"  # the consumer's tenant id belongs to another consumer
    STORE_DOWN = "store_down"  # the database cannot be used now
    EXISTS = "exists"  # a second start of one data flow where the protocol forbids it (DPS)
    UNKNOWN = "unknown"  # no grant for this transfer or data flow
    NOT_ENDING = "not_ending"  # a deprovision while the connector's transfer is not ending
    NOT_SUSPENDED = "not_suspended"  # a resume of a flow that ended or failed


class Refused(Exception):
    """A request the core will not take: the adapter renders ``kind`` and ``reason`` in its protocol's shape."""

    def __init__(self, kind: Refusal, reason: str, state: GrantState | None = None) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.state = state  # the grant's state, where it is why (NOT_SUSPENDED)

    @property
    def retry(self) -> bool:
        """A moment's outage (database, management API): the caller may send it again."""
        return self.kind in (Refusal.UNVERIFIABLE, Refusal.STORE_DOWN)


STORE_DOWN = "state store unavailable, retry later"
TENANT_TAKEN = "this consumer's tenant id is taken by another consumer; the operator is alerted"
UNVERIFIABLE = "the connector's management API cannot be asked yet"


def flow_request(
    protocol: Protocol, process_id: str, dataset_id: str, callback: str, profile: str = ""
) -> TransferRequest:
    """A signaling protocol's start in the core's terms: one grant per process and protocol."""
    return TransferRequest(
        protocol=protocol,
        transfer_process_id=process_id,
        resource_definition_id=str(protocol),
        asset_id=dataset_id,
        callback_address=callback,
        policy={"profile": profile} if profile else None,
        delivery=Handover.RESPONSE,
    )


def _asset_name(svc: Services, asset_id: str) -> str:
    asset = svc.catalogue.resolve(asset_id, svc.sessions)
    if asset is None:
        raise Refused(Refusal.NOT_OFFERED, f"asset {asset_id!r} is not offered")
    return asset.name


def _verified(svc: Services, request: TransferRequest, consumer: str | None = None) -> Identity:
    """The request's consumer by :mod:`provisioner.core.identity`; a signaling start names one (``consumer``)."""
    transfer_process_id = request.transfer_process_id
    try:
        if consumer is None:
            return identity.resolve(svc, transfer_process_id, request.asset_id, request.policy)
        return identity.resolve_flow(svc, transfer_process_id, request.asset_id, consumer)
    except EdcRejected as exc:
        raise Refused(Refusal.NOT_VERIFIED, f"not verified with the connector: {exc}") from None
    except EdcLookupError as exc:
        log.warning("transfer %s not verified yet: %s", transfer_process_id, exc)
        raise Refused(Refusal.UNVERIFIABLE, UNVERIFIABLE) from None


def _insert(svc: Services, request: TransferRequest, asset_name: str, who: Identity) -> GrantView:
    try:
        return store.accept_provision(svc.sessions, svc.settings, request, asset_name, svc.clock(), who)
    except store.TenantCollision as exc:
        log.error("refused transfer %s: %s", request.transfer_process_id, exc)
        raise Refused(Refusal.TENANT_TAKEN, TENANT_TAKEN) from None


# --- the HTTP provisioner --------------------------------------------------------------------------------


async def ending(svc: Services, transfer_process_id: str) -> bool:
    """Whether a request for a transfer we know comes while the connector ends that transfer. EDC up to 0.10 sends
    deprovision without ``type``, with the provision request's very body: such a request is a deprovision when
    EDC's management API shows the transfer ending (EDC provisions only while it is ``PROVISIONING*``). Without
    a management API configured, such requests stay provisions (the operator guide says so)."""
    try:
        if not svc.settings.edc_management_url:
            return False
        if not await asyncio.to_thread(store.known_transfer, svc.sessions, transfer_process_id):
            return False
        state = await asyncio.to_thread(svc.management.transfer_state, transfer_process_id)
    except EdcLookupError as exc:
        # 5xx makes EDC send the same request again, whichever it was; 200 would end a deprovision.
        log.warning("typeless request for known transfer %s, EDC not asked: %s", transfer_process_id, exc)
        raise Refused(
            Refusal.UNVERIFIABLE, "cannot tell provision from deprovision yet (EDC's management API)"
        ) from None
    except (DBAPIError, SQLAlchemyError) as exc:
        log.warning("database unavailable: %s", exc)
        raise Refused(Refusal.STORE_DOWN, STORE_DOWN) from None
    log.info("typeless request for transfer %s in state %s", transfer_process_id, state)
    return state in ENDING_STATES


async def provision(svc: Services, worker: Scheduler, request: TransferRequest) -> GrantView:
    """Take a provision request once: a retried or duplicated one finds the first grant (``created`` False)."""
    accepted, inserted = await asyncio.to_thread(_provision, svc, request)
    # A grant this request inserted, or one a concurrent copy inserted while this one tried (that copy kicked it
    # already: this kick is not due); a plain retry of a settled request changes nothing.
    if inserted:
        if accepted.tenant_id:
            worker.kick_tenant(accepted.tenant_id, due=accepted.created)
        else:
            worker.kick_grant(accepted.grant_id)
    return accepted


def _provision(svc: Services, request: TransferRequest) -> tuple[GrantView, bool]:
    """The request's grant, and whether this call got as far as inserting it (won or lost the race)."""
    try:
        asset_name = _asset_name(svc, request.asset_id)
        who: Identity | None = None
        for attempt in range(CONFLICT_RETRIES):
            existing = store.existing_grant(svc.sessions, request)
            if existing is not None:
                return existing, attempt > 0
            if who is None:
                who = _verified(svc, request)
            try:
                return _insert(svc, request, asset_name, who), True
            except IntegrityError:
                if attempt == CONFLICT_RETRIES - 1:
                    raise
    except (DBAPIError, SQLAlchemyError) as exc:
        log.warning("database unavailable: %s", exc)
        raise Refused(Refusal.STORE_DOWN, STORE_DOWN) from None
    raise AssertionError("unreachable")


async def deprovision(svc: Services, worker: Scheduler, request: TransferRequest, verify: bool) -> GrantView:
    """End the grant(s) of a transfer. ``verify``: the connector's records must show the transfer ending (a
    typeless deprovision was recognised by them already)."""
    accepted = await asyncio.to_thread(_deprovision, svc, request, verify)
    if accepted.tenant_id:
        worker.kick_tenant(accepted.tenant_id, due=True)
    return accepted


def _deprovision(svc: Services, request: TransferRequest, verify: bool) -> GrantView:
    process = request.transfer_process_id
    try:
        if verify and svc.settings.verify_with_management:
            if not store.known_transfer(svc.sessions, process):
                raise Refused(Refusal.UNKNOWN, f"unknown transfer process {process!r}")
            try:
                state = svc.management.transfer_state(process)
            except EdcRejected as exc:
                raise Refused(Refusal.NOT_VERIFIED, f"not verified with the connector: {exc}") from None
            except EdcLookupError:
                raise Refused(Refusal.UNVERIFIABLE, UNVERIFIABLE) from None
            if state not in ENDING_STATES:
                raise Refused(
                    Refusal.NOT_ENDING, f"the connector's transfer is {state}, not ending: nothing deprovisioned"
                )
        try:
            accepted = store.accept_deprovision(svc.sessions, request)
        except store.UnknownTransfer:
            raise Refused(Refusal.UNKNOWN, f"unknown transfer process {process!r}") from None
    except (DBAPIError, SQLAlchemyError) as exc:
        log.warning("database unavailable: %s", exc)
        raise Refused(Refusal.STORE_DOWN, STORE_DOWN) from None
    return accepted


# --- the signaling protocols (signaling, dps) ----------------------------------------------------------------


async def start(
    svc: Services,
    worker: Scheduler,
    request: TransferRequest,
    consumer: str,
    exclusive: bool,
    gone: Callable[[], Awaitable[bool]] | None = None,
) -> Started:
    """A control plane's start: the flow's grant (looked up once), the asset, the consumer, the wait.
    ``exclusive``: a second start of the same process is refused (DPS) rather than answered again (signaling);
    a suspended flow resumes. Raises :class:`Refused`."""
    process = request.transfer_process_id
    exists = Refused(Refusal.EXISTS, f"a data flow for process {process!r} exists already")
    try:
        existing = await asyncio.to_thread(store.find_flow, svc.sessions, request.protocol, process)
        if exclusive and existing is not None:
            raise exists
        asset_name = await asyncio.to_thread(_asset_name, svc, request.asset_id)
        who = await asyncio.to_thread(_verified, svc, request, consumer)
        grant = await asyncio.to_thread(_accept_start, svc, request, asset_name, who, existing)
        if exclusive and not grant.created:  # a concurrent duplicate won the insert
            raise exists
        if grant.tenant_id:
            worker.kick_tenant(grant.tenant_id, due=True)
        wait = svc.settings.signaling_start_wait_seconds
        return await flows.await_ready(svc, worker, grant.grant_id, grant.created, wait, gone)
    except (DBAPIError, SQLAlchemyError) as exc:
        log.warning("database unavailable: %s", exc)
        raise Refused(Refusal.STORE_DOWN, STORE_DOWN) from None


def _accept_start(
    svc: Services, request: TransferRequest, asset_name: str, who: Identity, existing: GrantView | None
) -> GrantView:
    """Persist the flow (idempotent per process); a suspended flow resumes."""
    for attempt in range(CONFLICT_RETRIES):
        if existing is None:
            try:
                return _insert(svc, request, asset_name, who)
            except IntegrityError:
                if attempt == CONFLICT_RETRIES - 1:
                    raise
                existing = store.find_flow(svc.sessions, request.protocol, request.transfer_process_id, duplicate=True)
                continue
        # Read again under the row's lock, whatever ``existing`` said: a suspend may have committed since it was
        # looked up (identity and the catalogue run in between); a suspended flow resumes.
        resumed = store.resume(svc.sessions, request.protocol, request.transfer_process_id, Handover.RESPONSE)
        return resumed or existing
    raise AssertionError("unreachable")


def _changed(worker: Scheduler, grant: GrantView | None, process: str) -> GrantView:
    if grant is None:
        raise Refused(Refusal.UNKNOWN, f"unknown data flow {process!r}")
    if grant.tenant_id:
        worker.kick_tenant(grant.tenant_id, due=True)
    return grant


async def suspend(svc: Services, worker: Scheduler, protocol: Protocol, process: str) -> GrantView:
    """Revoke a data flow's token and keep its tenant."""
    try:
        grant = await asyncio.to_thread(store.suspend, svc.sessions, protocol, process)
    except (DBAPIError, SQLAlchemyError) as exc:
        log.warning("database unavailable: %s", exc)
        raise Refused(Refusal.STORE_DOWN, STORE_DOWN) from None
    return _changed(worker, grant, process)


async def end(svc: Services, worker: Scheduler, protocol: Protocol, process: str, ended_by: EndedBy) -> GrantView:
    """Terminate or complete a flow: its token is revoked and, when it was the last, the tenant torn down."""
    try:
        grant = await asyncio.to_thread(store.end_flow, svc.sessions, protocol, process, ended_by)
    except (DBAPIError, SQLAlchemyError) as exc:
        log.warning("database unavailable: %s", exc)
        raise Refused(Refusal.STORE_DOWN, STORE_DOWN) from None
    return _changed(worker, grant, process)


async def resume(
    svc: Services,
    worker: Scheduler,
    protocol: Protocol,
    process: str,
    gone: Callable[[], Awaitable[bool]] | None = None,
) -> Started:
    """A suspended flow starts again with a new token (DPS resume); a running one is answered as it is."""
    try:
        resumed = await asyncio.to_thread(store.resume, svc.sessions, protocol, process, Handover.RESPONSE)
        if resumed is not None and resumed.state not in (
            GrantState.PROVISIONING,
            GrantState.READY,
            GrantState.PROVISIONED,
        ):
            raise Refused(Refusal.NOT_SUSPENDED, f"data flow {process!r} is not suspended", resumed.state)
        grant = _changed(worker, resumed, process)
        wait = svc.settings.signaling_start_wait_seconds
        started = await flows.await_ready(svc, worker, grant.grant_id, False, wait, gone)
    except (DBAPIError, SQLAlchemyError) as exc:
        log.warning("database unavailable: %s", exc)
        raise Refused(Refusal.STORE_DOWN, STORE_DOWN) from None
    return dataclasses.replace(started, profile=grant.profile)


def look_up(svc: Services, protocol: Protocol, process: str) -> GrantView:
    """A data flow's grant as it is now (DPS status)."""
    try:
        grant = store.find_flow(svc.sessions, protocol, process)
    except (DBAPIError, SQLAlchemyError) as exc:
        log.warning("database unavailable: %s", exc)
        raise Refused(Refusal.STORE_DOWN, STORE_DOWN) from None
    if grant is None:
        raise Refused(Refusal.UNKNOWN, f"unknown data flow {process!r}")
    return grant
