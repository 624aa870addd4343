"""Teardown steps: every token revoked first, then the API's route, the namespace (and everything in it), the
MinIO users, the tenant's objects where the operator's retention says so; then the tenant is marked deleted and
its ending grants deprovisioned."""

from __future__ import annotations

from sqlalchemy import select

from provisioner import manifests
from provisioner.infra import audit
from provisioner.infra.errors import NotYet
from provisioner.infra.models import Grant, Tenant
from provisioner.infra.secrets import secret_value
from provisioner.infra.states import GrantState, TenantState, move
from provisioner.steps.apipods import api_serving
from provisioner.steps.grants import grant_ended
from provisioner.steps.model import StepContext
from templates.labels import LABEL_GRANT, LABEL_MANAGED_BY, MANAGER
from templates.names import API, API_TOKENS_SECRET


def revoke_tokens(ctx: StepContext) -> None:
    """First of all, the tenant API refuses every token: an empty token set and no grant's token Secret. While its
    pods serve, the run waits for them to re-read the set, so that from the end of the last grant until the tenant
    is gone a consumer's token gets 401, never an answer and never a 5xx of a half-deleted namespace."""
    svc, snap = ctx.svc, ctx.snap
    if svc.kube.get("v1", "Namespace", snap.namespace) is None:
        return
    live = secret_value(svc.kube.get("v1", "Secret", API_TOKENS_SECRET, snap.namespace), "sha256")
    selector = f"{LABEL_MANAGED_BY}={MANAGER},{LABEL_GRANT}"
    for secret in svc.kube.list("v1", "Secret", snap.namespace, selector):
        svc.kube.delete("v1", "Secret", secret["metadata"]["name"], snap.namespace)
    if live:
        svc.kube.apply(manifests.tokens_secret(ctx.spec))  # no products in teardown: no digests
        if api_serving(svc, snap.namespace):
            # Half a second beyond the pods' re-read: their refusal (401) is what a consumer meets before the route
            # goes, not a race between the two.
            delay = svc.settings.api_token_refresh_seconds + 0.5
            raise NotYet("every token leaves the API's token set", delay=delay)


def delete_ingress(ctx: StepContext) -> None:
    """The API's route goes before its pods do: the ingress answers 404 for a tenant that is going, not 502/503."""
    ctx.svc.kube.delete("networking.k8s.io/v1", "Ingress", API, ctx.snap.namespace)


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
