"""Steps that apply a tenant's Kubernetes objects (namespace, RBAC, quota, network, configuration, the API, its
WorkflowTemplates) and revoke the tokens of grants that ended. Every apply is server-side and idempotent."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from provisioner import manifests
from provisioner.infra.errors import NotYet
from provisioner.infra.kube import PARALLEL_APPLIES
from provisioner.steps.apipods import api_serving
from provisioner.steps.model import StepContext, StepFn
from templates.labels import LABEL_GRANT, LABEL_MANAGED_BY, LABEL_TENANT, MANAGER
from templates.names import WORKER, grant_token_secret_name

LEGACY_WORKER_TOKEN = f"{WORKER}.service-account-token"  # made by releases before the projected token


def ensure_namespace(ctx: StepContext) -> None:
    ctx.svc.kube.apply(manifests.namespace(ctx.svc.settings, ctx.spec))


def applier(build: Callable[[StepContext], list[dict[str, Any]]], side_by_side: bool = True) -> StepFn:
    """A step applying ``build``'s objects, side by side where they are independent of each other (they reference
    only objects of earlier steps): a new consumer waits for each step's slowest object, not for the sum. Any
    failure fails the step, which is applied whole again (applies are idempotent)."""

    def run(ctx: StepContext) -> None:
        objects = build(ctx)
        if len(objects) < 2 or not side_by_side:
            for manifest in objects:
                ctx.svc.kube.apply(manifest)
            return
        with ThreadPoolExecutor(min(PARALLEL_APPLIES, len(objects)), thread_name_prefix="apply") as pool:
            for future in [pool.submit(ctx.svc.kube.apply, manifest) for manifest in objects]:
                future.result()

    return run


def apply_templates(ctx: StepContext) -> None:
    """The tenant's WorkflowTemplates: one per asset it holds; templates of assets it no longer holds go."""
    svc, ns = ctx.svc, ctx.snap.namespace
    wanted = manifests.workflow_templates(svc.settings, ctx.spec)
    for manifest in wanted:
        svc.kube.apply(manifest)
    names = {m["metadata"]["name"] for m in wanted}
    selector = f"{LABEL_MANAGED_BY}={MANAGER},{LABEL_TENANT}={ctx.snap.tenant_id}"
    for existing in svc.kube.list("argoproj.io/v1alpha1", "WorkflowTemplate", ns, selector):
        if existing["metadata"]["name"] not in names:
            svc.kube.delete("argoproj.io/v1alpha1", "WorkflowTemplate", existing["metadata"]["name"], ns)
    # Tenants made by earlier releases have the executor's long-lived token Secret; templates compiled now give
    # job pods a projected, pod-bound token instead, so it goes (a job started from a template of the earlier
    # release before this step would wait for it: upgrade between jobs, see the operator guide).
    svc.kube.delete("v1", "Secret", LEGACY_WORKER_TOKEN, ns)


def revoke_ended_grants(ctx: StepContext) -> None:
    """Delete the token Secret of every grant that is not active. Its digest left the API's token set in
    "config"; the API re-reads that set within ``api_token_refresh_seconds``, so the run waits that long before
    any grant counts as ended (or suspended)."""
    svc, snap = ctx.svc, ctx.snap
    selector = f"{LABEL_MANAGED_BY}={MANAGER},{LABEL_GRANT}"
    active = {grant_token_secret_name(g) for g in snap.active_grant_ids}
    revoked = False
    for secret in svc.kube.list("v1", "Secret", snap.namespace, selector):
        if secret["metadata"]["name"] not in active:
            svc.kube.delete("v1", "Secret", secret["metadata"]["name"], snap.namespace)
            revoked = True
    if revoked and api_serving(svc, snap.namespace):
        # Half a second beyond the pods' re-read, so that every replica refuses the token before the connector
        # hears that the grant ended.
        raise NotYet("revoked tokens leave the API's token set", delay=svc.settings.api_token_refresh_seconds + 0.5)
