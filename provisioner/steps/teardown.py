"""Teardown steps: the namespace (and everything in it), the MinIO users, the tenant's objects where the operator's
retention says so; then the tenant is marked deleted and its ending grants deprovisioned."""

from __future__ import annotations

from sqlalchemy import select

from provisioner.infra import audit
from provisioner.infra.errors import NotYet
from provisioner.infra.models import Grant, Tenant
from provisioner.infra.states import GrantState, TenantState, move
from provisioner.steps.grants import grant_ended
from provisioner.steps.model import StepContext


def delete_namespace(ctx: StepContext) -> None:
    ctx.svc.kube.delete("v1", "Namespace", ctx.snap.namespace)


def delete_s3_users(ctx: StepContext) -> None:
    ctx.svc.storage.remove_user(ctx.snap.s3_user)
    ctx.svc.storage.remove_user(ctx.snap.exec_user)


def delete_objects(ctx: StepContext) -> None:
    svc = ctx.svc
    if svc.settings.retention != "delete":
        return
    removed = svc.storage.delete_prefix(svc.settings.s3_prefix_for(ctx.snap.tenant_id))
    if removed:
        with svc.sessions.begin() as session:
            audit.record(session, "objects_deleted", ctx.snap.tenant_id, count=removed)


def namespace_gone(ctx: StepContext) -> None:
    if ctx.svc.kube.get("v1", "Namespace", ctx.snap.namespace) is not None:
        raise NotYet(f"namespace {ctx.snap.namespace} is still terminating", delay=1.0)


def mark_deleted(ctx: StepContext) -> None:
    svc, snap = ctx.svc, ctx.snap
    with svc.sessions.begin() as session:
        tenant = session.get(Tenant, snap.tenant_id)
        if tenant is None:
            return
        for grant in session.scalars(select(Grant).where(Grant.tenant_id == snap.tenant_id)):
            if grant.state == GrantState.DEPROVISIONING:
                grant_ended(svc, grant)
                audit.record(session, "grant_deprovisioned", grant.tenant_id, grant.id, ended_by=grant.ended_by)
        move(tenant, TenantState.DELETED)
        tenant.token_sha256 = None
        tenant.attempts = 0
        tenant.error = None
        tenant.next_attempt_at = None
        audit.record(
            session, "tenant_deleted", snap.tenant_id, namespace=snap.namespace, retention=svc.settings.retention
        )
