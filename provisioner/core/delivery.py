"""Answers to connectors once the steps are done: the endpoint and token of a ready grant, the notice that a
grant ended, the notice that it failed. Each goes through the grant's protocol
:class:`~provisioner.infra.notify.Notifier`; what the outcome means (done, retry with backoff, give up) is decided
here, the same for every protocol.

Handover is at least once: a crash between the connector's 2xx and our commit sends the same answer again,
which every protocol tolerates (EDC treats a repeated callback as a no-op, signaling answers are idempotent).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from provisioner.core.store import backoff
from provisioner.infra import audit
from provisioner.infra.models import Grant, Tenant
from provisioner.infra.notify import CallbackResult, GrantRef, Outcome
from provisioner.infra.secrets import grant_token
from provisioner.infra.services import Services
from provisioner.infra.states import EndNotice, GrantState, Handover, Protocol, TenantState, move

log = logging.getLogger(__name__)

# Protocols whose connectors hear about a grant that can never be served (EDC's HTTP provisioner cannot).
FAILURE_NOTICES = frozenset({Protocol.SIGNALING, Protocol.DPS})


def ref(grant: Grant) -> GrantRef:
    return GrantRef(
        id=grant.id,
        protocol=Protocol(grant.protocol),
        transfer_process_id=grant.transfer_process_id,
        resource_definition_id=grant.resource_definition_id,
        asset_id=grant.asset_id,
        resource_name=grant.resource_name,
        tenant_id=grant.tenant_id or "",
        callback_address=grant.callback_address,
        profile=str((grant.policy or {}).get("profile", "")),
    )


def _response_abandoned(svc: Services, grant: Grant) -> bool:
    """A synchronous start whose request died with its process (a crash, a restart): deliver by callback."""
    waited = svc.clock() - grant.updated_at
    return waited > timedelta(seconds=2 * svc.settings.signaling_start_wait_seconds + 5)


def deliver(svc: Services, tenant_id: str) -> float | None:
    """Send every answer that is due for this tenant's grants. Returns 0 when the tenant must run again at once
    (a token Secret was missing); retries of failed callbacks are found by the reconciler."""
    now = svc.clock()
    with svc.sessions() as session:
        tenant = session.get(Tenant, tenant_id)
        if tenant is None:
            return None
        due = (Grant.next_attempt_at.is_(None)) | (Grant.next_attempt_at <= now)
        ready = [
            g
            for g in session.scalars(
                select(Grant).where(Grant.tenant_id == tenant_id, Grant.state == GrantState.READY, due)
            )
            if g.delivery == Handover.CALLBACK or _response_abandoned(svc, g)
        ]
        notices = list(
            session.scalars(
                select(Grant).where(
                    Grant.tenant_id == tenant_id,
                    Grant.state.in_([GrantState.DEPROVISIONED, GrantState.FAILED]),
                    Grant.deprovision_callback == EndNotice.DUE,
                    due,
                )
            )
        )
        namespace, error = tenant.namespace, tenant.error or "the tenant could not be provisioned"
    again: float | None = None
    for grant in ready:
        # Each grant's answer carries that grant's own token and no other.
        token = grant_token(svc.kube, namespace, grant.id)
        if token is None:
            _reapply(svc, grant.id)
            again = 0.0
            continue
        svc.step_hook("callback")
        result = svc.notifiers[Protocol(grant.protocol)].ready(ref(grant), svc.settings.api_url_for(tenant_id), token)
        _record_ready(svc, grant.id, result)
    for grant in notices:
        notifier = svc.notifiers[Protocol(grant.protocol)]
        if grant.state == GrantState.FAILED:
            result = notifier.failed(ref(grant), (grant.error or error)[:500])
        else:
            result = notifier.ended(ref(grant))
        _record_notice(svc, grant.id, result)
    return again


def _reapply(svc: Services, grant_id: int) -> None:
    """The token Secret is gone (deleted by hand, a crash before it was written): make the tenant re-apply."""
    with svc.sessions.begin() as session:
        grant = session.get(Grant, grant_id)
        if grant is None or grant.state != GrantState.READY or grant.tenant_id is None:
            return
        move(grant, GrantState.PROVISIONING)
        tenant = session.get(Tenant, grant.tenant_id)
        if tenant is not None and tenant.state == TenantState.READY:
            move(tenant, TenantState.PENDING)
        audit.record(session, "token_missing", grant.tenant_id, grant.id)


def mark_provisioned(svc: Services, session: Session, grant: Grant, detail: str) -> None:
    """The connector holds the endpoint (a callback it accepted, or our answer to its start)."""
    move(grant, GrantState.PROVISIONED)
    grant.called_back_at = svc.clock()
    grant.error = None
    grant.next_attempt_at = None
    svc.metrics.provision_seconds.observe((grant.called_back_at - grant.created_at).total_seconds())
    audit.record(session, "callback_sent", grant.tenant_id, grant.id, response=detail)


def _record_ready(svc: Services, grant_id: int, result: CallbackResult) -> None:
    with svc.sessions.begin() as session:
        grant = session.get(Grant, grant_id)
        if grant is None or grant.state != GrantState.READY:
            return
        svc.metrics.callbacks.labels(kind=f"{grant.protocol}:ready", outcome=result.outcome).inc()
        grant.attempts += 1
        if result.outcome == Outcome.OK:
            mark_provisioned(svc, session, grant, result.detail)
        elif result.outcome == Outcome.RETRY and grant.attempts < svc.settings.callback_max_attempts:
            grant.error = result.detail
            grant.next_attempt_at = svc.clock() + backoff(svc.settings, grant.attempts)
            audit.record(
                session, "callback_retry", grant.tenant_id, grant.id, response=result.detail, attempts=grant.attempts
            )
        else:
            move(grant, GrantState.FAILED)
            grant.error = f"callback gave up: {result.detail}"
            audit.record(
                session, "callback_failed", grant.tenant_id, grant.id, response=result.detail, attempts=grant.attempts
            )
            log.error("grant %s: ready callback failed for good: %s", grant.id, result.detail)


def _record_notice(svc: Services, grant_id: int, result: CallbackResult) -> None:
    with svc.sessions.begin() as session:
        grant = session.get(Grant, grant_id)
        if grant is None or grant.deprovision_callback != EndNotice.DUE:
            return
        kind = "failed" if grant.state == GrantState.FAILED else "ended"
        svc.metrics.callbacks.labels(kind=f"{grant.protocol}:{kind}", outcome=result.outcome).inc()
        grant.attempts += 1
        if result.outcome == Outcome.OK:
            grant.deprovision_callback = EndNotice.DONE
        elif result.outcome == Outcome.FATAL:
            # EDC may already consider the resource gone (it marked it deprovisioned when we answered 200).
            grant.deprovision_callback = EndNotice.REJECTED
        elif grant.attempts < svc.settings.callback_max_attempts:
            grant.next_attempt_at = svc.clock() + backoff(svc.settings, grant.attempts)
        else:
            grant.deprovision_callback = EndNotice.FAILED
            log.error("grant %s: %s notice failed for good: %s", grant.id, kind, result.detail)
        event = "deprovision_callback" if grant.protocol == Protocol.HTTP_PROVISIONER else f"{kind}_notice"
        audit.record(
            session,
            f"{event}_{grant.deprovision_callback}"[:64],
            grant.tenant_id,
            grant.id,
            response=result.detail,
            attempts=grant.attempts,
        )


def fail_waiting_grants(svc: Services, session: Session, tenant_id: str, reason: str) -> None:
    """The tenant failed for good: grants still waiting for it fail, and their connectors are told where the
    protocol has a way to say so (signaling ``fail``, DPS ``errored``)."""
    for grant in session.scalars(
        select(Grant).where(Grant.tenant_id == tenant_id, Grant.state.in_([GrantState.PROVISIONING, GrantState.READY]))
    ):
        move(grant, GrantState.FAILED)
        grant.error = reason
        grant.attempts = 0
        grant.next_attempt_at = None
        if grant.protocol in FAILURE_NOTICES:
            grant.deprovision_callback = EndNotice.DUE
        audit.record(session, "grant_failed", tenant_id, grant.id, error=reason)
