"""Readiness: nothing is handed out until the tenant API answers every token this run makes ready, and no grant
counts as ready or ended until the serving pods know the token set (then the grants' states move)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select

from provisioner.infra import audit
from provisioner.infra.apiprobe import Answer
from provisioner.infra.errors import NotYet, TemporaryError
from provisioner.infra.models import Grant, Tenant
from provisioner.infra.secrets import grant_token
from provisioner.infra.states import GrantState, TenantState, move
from provisioner.steps.apipods import api_poll_delay, api_rolled_out, api_start, at, condition
from provisioner.steps.grants import grant_ended
from provisioner.steps.model import StepContext
from templates.names import API


def api_answers(ctx: StepContext) -> None:
    """Ready means working: nothing is handed out until the tenant API answers, at the URL the provisioner
    checks, to the token of every grant this run makes ready.

    A rollout past its progress deadline (``api_start_timeout_seconds``) is a failed attempt (retried with
    backoff, then the tenant fails and its connectors are told) when Kubernetes names a failure; when its pods
    are only slow (a busy node: scheduled, starting, nothing crashed) it is waited for, up to
    ``api_start_patience_seconds``, without spending attempts. An API available but not answering for
    ``api_start_timeout_seconds`` is a failed attempt too."""
    svc, snap = ctx.svc, ctx.snap
    settings = svc.settings
    deployment = svc.kube.get("apps/v1", "Deployment", API, snap.namespace)
    status = (deployment or {}).get("status") or {}
    if not int(status.get("availableReplicas") or 0):
        progressing = condition(status, "Progressing")
        if progressing.get("status") == "False" and progressing.get("reason") == "ProgressDeadlineExceeded":
            start = api_start(svc, snap.namespace, status)
            timeout = settings.api_start_timeout_seconds
            if start.failures:
                raise TemporaryError(
                    f"the tenant API did not start within {timeout}s: {'; '.join(start.failures)}"[:800]
                )
            began = start.waiting_since or at((deployment or {})["metadata"]["creationTimestamp"])
            waited = (svc.clock() - began).total_seconds()
            if waited > settings.api_start_patience_seconds:
                raise TemporaryError(
                    f"the tenant API's pods have been starting for {waited:.0f}s with no failure named"
                )
            raise NotYet(f"the tenant API is starting slowly ({waited:.0f}s, past the {timeout}s deadline)", delay=2.0)
        raise NotYet("the tenant API is starting", delay=api_poll_delay(svc.clock(), deployment))
    states = dict(snap.grant_states)
    readying = [g for g in snap.active_grant_ids if states.get(g) == GrantState.PROVISIONING]
    for grant_id in readying:
        token = grant_token(svc.kube, snap.namespace, grant_id)
        if token is None:
            raise NotYet("the grant's token is being written", delay=0.5)
        answer, seen = svc.probe.check(snap.tenant_id, token)
        if answer is Answer.OK:
            continue
        since = condition(status, "Available").get("lastTransitionTime")
        timeout = settings.api_start_timeout_seconds
        if since and svc.clock() - datetime.fromisoformat(since) > timedelta(seconds=timeout):
            raise TemporaryError(f"the tenant API is available but does not answer ({answer}): {seen}")
        delay = api_poll_delay(svc.clock(), deployment)
        raise NotYet(f"the tenant API does not answer yet ({answer}): {seen}", delay=delay)


def mark_ready(ctx: StepContext) -> None:
    """No endpoint is handed out (and no grant counts as ended) until the serving pods know the token set.

    Only what this run applied is settled: a grant that changed while the run went (a new one, a suspend, a
    terminate, a resume) keeps its state and the tenant stays pending, so the next run applies that change too.
    """
    svc, snap = ctx.svc, ctx.snap
    if not api_rolled_out(svc, snap.namespace):
        raise NotYet("the API's pods are rolling to the new token set", delay=1.0)
    seen = dict(snap.grant_states)
    with svc.sessions.begin() as session:
        # Locked rows (PostgreSQL; SQLite's BEGIN IMMEDIATE already serialises): a suspend or terminate committed
        # meanwhile is seen here as a change, never overwritten by this run.
        # Grants before their tenant, in id order: the order every other writer locks them in.
        query = select(Grant).where(Grant.tenant_id == snap.tenant_id).order_by(Grant.id).with_for_update()
        grants = list(session.scalars(query))
        tenant = session.get(Tenant, snap.tenant_id, with_for_update=True)
        if tenant is None:
            return
        changed = any(seen.get(g.id) != g.state for g in grants)
        for grant in grants:
            if seen.get(grant.id) != grant.state:
                continue
            if grant.state == GrantState.PROVISIONING:
                move(grant, GrantState.READY)
                grant.attempts = 0
                grant.next_attempt_at = None
                audit.record(session, "grant_ready", snap.tenant_id, grant.id, asset=grant.asset_name)
            elif grant.state == GrantState.DEPROVISIONING:
                grant_ended(svc, grant)
                audit.record(session, "grant_deprovisioned", grant.tenant_id, grant.id, ended_by=grant.ended_by)
        if changed:
            tenant.next_attempt_at = None
        elif tenant.state == TenantState.PENDING:
            move(tenant, TenantState.READY)
            tenant.attempts = 0
            tenant.error = None
            tenant.next_attempt_at = None
            audit.record(session, "tenant_ready", snap.tenant_id, assets=list(snap.asset_names))
    if changed:
        raise NotYet("grants changed while the tenant was applied", delay=0.0)
