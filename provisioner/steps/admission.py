"""Start-slot admission: a new tenant's API is started only while few enough tenants are starting in the cluster,
so a burst of new consumers starts in waves that each finish instead of starving every API pod of CPU."""

from __future__ import annotations

from provisioner.infra.errors import NotYet
from provisioner.steps.apipods import tenants_starting
from provisioner.steps.model import StepContext
from provisioner.steps.objects import ensure_namespace
from templates.names import API


def api_start_slot(ctx: StepContext) -> None:
    """A new tenant is started only while fewer than ``api_start_concurrency`` tenants are starting in the cluster
    (:func:`tenants_starting`): a burst of new consumers starts in waves that each finish, instead of starving every
    API pod of CPU until all miss their deadline. First in the list, so a waiting tenant costs a few reads, not a
    pass over its objects; its namespace, made here on admission (the next step applies it again, idempotently),
    is what the next count sees. Within one replica the count and that create are one act (``svc.start_gate``);
    across replicas they may overshoot by the starts admitted in the same instant, which is harmless. A tenant
    whose API exists never waits here (a token or settings change)."""
    svc, snap = ctx.svc, ctx.snap
    limit = svc.settings.api_start_concurrency
    if not limit or svc.kube.get("apps/v1", "Deployment", API, snap.namespace) is not None:
        return
    # Never blocks: a thread waiting here would be one fewer for the admitted tenants, whose progress frees slots.
    if not svc.start_gate.acquire(blocking=False):
        raise NotYet("waiting for a start slot: another tenant is being admitted", delay=0.5)
    try:
        starting = tenants_starting(svc, svc.clock())
        if snap.namespace in starting:
            return  # admitted by an earlier run: it holds its slot already
        if len(starting) >= limit:
            raise NotYet(f"waiting for a start slot: {len(starting)} tenants are starting (limit {limit})", delay=2.0)
        ensure_namespace(ctx)
    finally:
        svc.start_gate.release()
