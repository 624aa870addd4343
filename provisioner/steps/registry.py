"""The registry: the ordered lists of provisioning and teardown steps, and the loop that runs a plan of them.

Each step is idempotent (server-side apply, MinIO upserts, deletes that tolerate absence), so a crash between any
two steps is repaired by running the list again; the crash tests are parametrised over :data:`APPLY` and
:data:`TEARDOWN` themselves, so a new step is covered as soon as it is listed. A step reports progress it must wait
for with :class:`provisioner.infra.errors.NotYet` (the scheduler re-queues the tenant), never by sleeping. Which of
the steps run in a given run is decided by :func:`provisioner.core.plan.plan_run`, not here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from provisioner import manifests
from provisioner.steps.admission import api_start_slot
from provisioner.steps.credentials import choose_s3_keys, ensure_s3_users, ensure_tokens, write_s3_secret
from provisioner.steps.model import Made, Product, Step, StepContext, StepFailed
from provisioner.steps.objects import applier, apply_templates, ensure_namespace, revoke_ended_grants
from provisioner.steps.readiness import api_answers, mark_ready
from provisioner.steps.teardown import (
    delete_ingress,
    delete_namespace,
    delete_objects,
    delete_s3_users,
    mark_deleted,
    namespace_gone,
    revoke_tokens,
)

KEYS, GRANTS = Product.S3_KEYS, Product.GRANTS

APPLY: tuple[Step, ...] = (
    Step("start_slot", api_start_slot),
    Step("namespace", ensure_namespace),
    Step("s3_keys", choose_s3_keys, makes=frozenset({KEYS})),
    Step("s3_secret", write_s3_secret, needs=frozenset({KEYS})),
    Step("token", ensure_tokens, makes=frozenset({GRANTS}), on_grants=True),
    Step("rbac", applier(lambda c: manifests.rbac(c.spec), side_by_side=False)),
    Step("quota", applier(lambda c: manifests.quota(c.svc.settings, c.spec)), needs=frozenset({GRANTS})),
    Step("network", applier(lambda c: manifests.network_policies(c.svc.settings, c.spec))),
    Step(
        "config",
        applier(lambda c: manifests.config_objects(c.svc.settings, c.spec)),
        needs=frozenset({KEYS, GRANTS}),
        on_grants=True,
    ),
    Step("s3_user", ensure_s3_users, needs=frozenset({KEYS})),
    Step("api", applier(lambda c: manifests.api_objects(c.svc.settings, c.spec)), needs=frozenset({KEYS, GRANTS})),
    Step("templates", apply_templates, needs=frozenset({GRANTS})),
    Step("revoke", revoke_ended_grants, on_grants=True),
    Step("answers", api_answers, on_grants=True),
    Step("ready", mark_ready, on_grants=True),
)

TEARDOWN: tuple[Step, ...] = (
    Step("revoke_tokens", revoke_tokens),
    Step("delete_ingress", delete_ingress),
    Step("delete_namespace", delete_namespace),
    Step("delete_s3_user", delete_s3_users),
    Step("delete_objects", delete_objects),
    Step("namespace_gone", namespace_gone),
    Step("deleted", mark_deleted),
)


def run_steps(
    ctx: StepContext,
    steps: Iterable[tuple[int, Step]],
    after: Callable[[int, Made], Iterable[tuple[int, Step]] | None] | None = None,
) -> Made:
    """Run ``steps`` (each with its place in its list) in order; the crash hook fires before each, and a failure
    carries its step's name and place. ``after`` sees what each step made and may hand back the steps to run from
    there on instead (a plan that widens). Returns what the steps made."""
    pending = list(steps)
    while pending:
        index, step = pending.pop(0)
        ctx.svc.step_hook(step.name)
        began = time.perf_counter()
        try:
            made = step.run(ctx)
        except Exception as exc:
            raise StepFailed(step.name, exc, index) from exc
        finally:
            ctx.svc.metrics.step_seconds.labels(step.name).observe(time.perf_counter() - began)
        ctx.made = ctx.made.with_(made)
        if after is not None and made is not None:
            instead = after(index, ctx.made)
            if instead is not None:
                pending = list(instead)
    return ctx.made
