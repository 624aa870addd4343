"""The provisioning and teardown steps: an explicit, ordered registry of plain functions.

Each step takes a :class:`StepContext` and is idempotent (server-side apply, MinIO upserts, deletes that
tolerate absence), so a crash between any two steps is repaired by running the whole list again; the crash
tests are parametrised over :data:`APPLY` and :data:`TEARDOWN` themselves, so a new step is covered as soon
as it is listed. A step reports progress it must wait for with :class:`provisioner.infra.errors.NotYet` (the
scheduler re-queues the tenant), never by sleeping.

Secrets and their truth: each grant's token and the tenant's S3 secret keys exist in full only in Secrets of
the tenant namespace (``wml-grant-<id>``, ``wml-api-env``, ``wml-s3``); the database keeps the tokens' sha256.
The keys are written to their Secrets before the MinIO users are made with them, so a crash in between makes the
users with the keys already held (a Secret lost behind our back gets a new key, and the user is updated to it); a
missing token Secret gets a new token before any answer could have carried the old one.
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from provisioner.infra import audit
from provisioner.infra.apiprobe import Answer
from provisioner.infra.errors import NotYet, TemporaryError
from provisioner.infra.kube import PARALLEL_APPLIES
from provisioner.infra.models import Grant, Tenant
from provisioner.infra.services import Services
from provisioner.infra.states import EndedBy, EndNotice, GrantState, Protocol, TenantState, move
from provisioner.manifests import tenant as tenants


@dataclass(frozen=True)
class Snapshot:
    """What one run of a tenant works from, read in one transaction."""

    tenant_id: str
    namespace: str
    consumer_id: str
    s3_user: str  # the API's MinIO user
    grant_ids: tuple[int, ...]  # holding and ending grants
    active_grant_ids: tuple[int, ...]  # whose tokens open the API
    asset_names: tuple[str, ...]
    contract_id: str
    grant_states: tuple[tuple[int, str], ...] = ()  # every grant of the tenant as the run found it

    @property
    def exec_user(self) -> str:
        """The executor's MinIO user (job inputs read, outputs and logs written; nothing else)."""
        return f"{self.s3_user}-exec"


@dataclass
class StepContext:
    svc: Services
    snap: Snapshot
    # only the steps marked ``grants`` (lifecycle.Resumes.grants_only); a step that finds more changed turns it off
    grants_only: bool = False
    spec: tenants.TenantSpec = field(init=False)

    def __post_init__(self) -> None:
        self.spec = tenants.TenantSpec(
            tenant=self.snap.tenant_id,
            namespace=self.snap.namespace,
            token_digests=(),
            s3_access_key="",
            s3_secret_key="",
        )


StepFn = Callable[[StepContext], None]


@dataclass(frozen=True)
class Step:
    name: str
    run: StepFn
    # A wait (NotYet) here may be resumed at this step while the tenant's snapshot is unchanged (lifecycle.Resumes):
    # only for steps that need nothing earlier steps put into the context.
    resumable: bool = False
    # What this step applies depends on the tenant's grants (tokens, their revocation, readiness), or it fills the
    # context such a step needs. A run in which only grants changed, soon after a whole pass, runs just these steps
    # (lifecycle.Resumes.grants_only): a consumer who already has a tenant waits for its token only.
    grants: bool = False


def secret_value(secret: dict[str, Any] | None, key: str) -> str | None:
    if not secret:
        return None
    if key in (secret.get("stringData") or {}):
        return str(secret["stringData"][key])
    raw = (secret.get("data") or {}).get(key)
    return base64.b64decode(raw).decode() if raw else None


def grant_token(svc: Services, namespace: str, grant_id: int) -> str | None:
    """A grant's token, read back from its Secret (None when there is none)."""
    name = tenants.grant_token_secret_name(grant_id)
    return secret_value(svc.kube.get("v1", "Secret", name, namespace), "token")


# --- apply ---------------------------------------------------------------------------------------------------


def ensure_namespace(ctx: StepContext) -> None:
    ctx.svc.kube.apply(tenants.namespace(ctx.svc.settings, ctx.spec))


def choose_s3_keys(ctx: StepContext) -> None:
    """The two MinIO users' secret keys: read back from their Secrets, or made new. Written to the Secrets (steps
    ``s3_secret`` and ``config``) before the users are made (``s3_user``), so a key a user has is always held by a
    Secret, and a crash in between makes the users with the keys already written."""
    svc, snap = ctx.svc, ctx.snap
    api_env = svc.kube.get("v1", "Secret", tenants.API_ENV_SECRET, snap.namespace)
    api_key = secret_value(api_env, "WML_API_S3_SECRET_KEY")
    exec_key = secret_value(svc.kube.get("v1", "Secret", tenants.S3_SECRET, snap.namespace), "secretKey")
    if api_key is None or exec_key is None or exec_key == api_key:
        # A key lost behind our back (or a tenant made before the executor had a user of its own): new keys reach
        # the MinIO users and the API's pods only through the steps a run of grants only would skip.
        ctx.grants_only = False
    api_key = api_key or secrets.token_urlsafe(30)
    if exec_key is None or exec_key == api_key:
        exec_key = secrets.token_urlsafe(30)
    ctx.spec = replace(
        ctx.spec,
        s3_access_key=snap.s3_user,
        s3_secret_key=api_key,
        exec_access_key=snap.exec_user,
        exec_secret_key=exec_key,
    )


def ensure_s3_users(ctx: StepContext) -> None:
    """The MinIO users, with the keys their Secrets hold. Before the API's Deployment: making a user costs MinIO
    and us an Argon2 key derivation each (CPU-bound, ~0.1-0.2 s), which run alongside a new pod's start slowed
    it more than they took (measured with ``python -m tests.bench signaling``)."""
    svc, snap, spec = ctx.svc, ctx.snap, ctx.spec
    prefix = svc.settings.s3_prefix_for(snap.tenant_id)
    # Side by side: MinIO's admin API derives an Argon2 key per request on both ends (~0.2 s per call here).
    with ThreadPoolExecutor(2, thread_name_prefix="s3-user") as pool:
        made = [
            pool.submit(svc.storage.ensure_user, snap.s3_user, spec.s3_secret_key, prefix),
            pool.submit(svc.storage.ensure_user, snap.exec_user, spec.exec_secret_key, prefix, executor=True),
        ]
        for future in made:
            future.result()


def write_s3_secret(ctx: StepContext) -> None:
    # The executor's Secret only: the API's environment is written whole, tokens included, by "config".
    ctx.svc.kube.apply(tenants.config_objects(ctx.svc.settings, ctx.spec)[0])


def ensure_tokens(ctx: StepContext) -> None:
    """Each active grant's own token (made once, kept in its Secret); the database keeps their digests."""
    svc, snap = ctx.svc, ctx.snap
    digests = []
    for grant_id in snap.active_grant_ids:
        token = grant_token(svc, snap.namespace, grant_id)
        if token is None:
            token = secrets.token_urlsafe(32)
            svc.kube.apply(tenants.grant_token_secret(ctx.spec, grant_id, token))
        digests.append(tenants.token_sha256(token))
    joined = tenants.token_sha256(",".join(sorted(digests)))
    with svc.sessions.begin() as session:
        tenant = session.get(Tenant, snap.tenant_id)
        if tenant is not None and (tenant.token_sha256 != joined or tenant.s3_user != snap.s3_user):
            tenant.token_sha256 = joined
            tenant.s3_user = snap.s3_user
            audit.record(session, "credentials_set", snap.tenant_id, s3_user=snap.s3_user, grants=len(digests))
    assets = svc.catalogue.by_names(list(snap.asset_names), svc.sessions)
    ctx.spec = replace(ctx.spec, token_digests=tuple(sorted(digests)), contract_id=snap.contract_id, assets=assets)


def _applier(build: Callable[[StepContext], list[dict[str, Any]]], side_by_side: bool = True) -> StepFn:
    """A step applying ``build``'s objects, side by side where they are independent of each other (they reference
    only objects of earlier steps): a new consumer waits for each step's slowest object, not for the sum. Any
    failure fails the step, which is applied whole again (applies are idempotent)."""

    def run(ctx: StepContext) -> None:
        manifests = build(ctx)
        if len(manifests) < 2 or not side_by_side:
            for manifest in manifests:
                ctx.svc.kube.apply(manifest)
            return
        with ThreadPoolExecutor(min(PARALLEL_APPLIES, len(manifests)), thread_name_prefix="apply") as pool:
            for future in [pool.submit(ctx.svc.kube.apply, manifest) for manifest in manifests]:
                future.result()

    return run


def apply_templates(ctx: StepContext) -> None:
    """The tenant's WorkflowTemplates: one per asset it holds; templates of assets it no longer holds go."""
    svc, ns = ctx.svc, ctx.snap.namespace
    wanted = tenants.workflow_templates(svc.settings, ctx.spec)
    for manifest in wanted:
        svc.kube.apply(manifest)
    names = {m["metadata"]["name"] for m in wanted}
    selector = f"{tenants.LABEL_MANAGED_BY}={tenants.MANAGER},{tenants.LABEL_TENANT}={ctx.snap.tenant_id}"
    for existing in svc.kube.list("argoproj.io/v1alpha1", "WorkflowTemplate", ns, selector):
        if existing["metadata"]["name"] not in names:
            svc.kube.delete("argoproj.io/v1alpha1", "WorkflowTemplate", existing["metadata"]["name"], ns)


def revoke_ended_grants(ctx: StepContext) -> None:
    """Delete the token Secret of every grant that is not active. Its digest left the API's token set in
    "config"; the API re-reads that set within ``api_token_refresh_seconds``, so the run waits that long before
    any grant counts as ended (or suspended)."""
    svc, snap = ctx.svc, ctx.snap
    selector = f"{tenants.LABEL_MANAGED_BY}={tenants.MANAGER},{tenants.LABEL_GRANT}"
    active = {tenants.grant_token_secret_name(g) for g in snap.active_grant_ids}
    revoked = False
    for secret in svc.kube.list("v1", "Secret", snap.namespace, selector):
        if secret["metadata"]["name"] not in active:
            svc.kube.delete("v1", "Secret", secret["metadata"]["name"], snap.namespace)
            revoked = True
    if revoked and api_serving(svc, snap.namespace):
        raise NotYet("revoked tokens leave the API's token set", delay=svc.settings.api_token_refresh_seconds)


def api_serving(svc: Services, namespace: str) -> bool:
    deployment = svc.kube.get("apps/v1", "Deployment", tenants.API, namespace)
    status = (deployment or {}).get("status") or {}
    return bool(status.get("availableReplicas") or status.get("readyReplicas"))


def api_rolled_out(svc: Services, namespace: str) -> bool:
    """While API pods serve, a changed token set rolls them: True once every serving pod has the new set.
    A Deployment that never served has nothing to wait for."""
    deployment = svc.kube.get("apps/v1", "Deployment", tenants.API, namespace)
    if deployment is None:
        return True
    status, spec = deployment.get("status") or {}, deployment.get("spec") or {}
    wanted = int(spec.get("replicas", 1))
    if not status.get("availableReplicas") and not status.get("readyReplicas"):
        return True
    return (
        int(status.get("observedGeneration", 0)) >= int(deployment["metadata"].get("generation", 0))
        and int(status.get("updatedReplicas", 0)) == wanted
        and int(status.get("replicas", 0)) == wanted
        and int(status.get("availableReplicas", 0)) >= wanted
    )


def _condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c.get("type") == kind), {})


@dataclass(frozen=True)
class ApiStart:
    """How a tenant API's pods are doing, as Kubernetes says it: ``failures`` it names (unschedulable, crashing,
    image missing, the quota refusing a pod) and when the oldest pod that does not serve yet was created."""

    failures: tuple[str, ...]
    waiting_since: datetime | None


def api_start(svc: Services, namespace: str, status: dict[str, Any]) -> ApiStart:
    """Read from the Deployment's ``status`` and its pods."""
    seen: list[str] = []
    oldest: datetime | None = None
    failure = _condition(status, "ReplicaFailure")
    if failure.get("status") == "True":  # no pod could even be created (e.g. the tenant's ResourceQuota)
        seen.append(f"{failure.get('reason')}: {failure.get('message', '')}")
    for pod in svc.kube.list("v1", "Pod", namespace, f"app.kubernetes.io/name={tenants.API}"):
        pod_status = pod.get("status") or {}
        if _condition(pod_status, "Ready").get("status") == "True":
            continue
        created = pod["metadata"].get("creationTimestamp")
        if created:
            at = _at(created)
            oldest = at if oldest is None else min(oldest, at)
        scheduled = _condition(pod_status, "PodScheduled")
        if scheduled.get("status") == "False":
            seen.append(f"{scheduled.get('reason')}: {scheduled.get('message', '')}")
        for container in pod_status.get("containerStatuses") or []:
            waiting = (container.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") and waiting["reason"] != "ContainerCreating":
                seen.append(f"{waiting['reason']}: {waiting.get('message', '')}")
            ended = (container.get("lastState") or {}).get("terminated") or {}
            if int(container.get("restartCount") or 0) and ended:  # it ran and died: a crash, not a slow start
                seen.append(
                    f"restarted {container['restartCount']}x, last {ended.get('reason')} ({ended.get('exitCode')})"
                )
    return ApiStart(tuple(sorted({s[:200] for s in seen})), oldest)


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
    if not limit or svc.kube.get("apps/v1", "Deployment", tenants.API, snap.namespace) is not None:
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


def tenants_starting(svc: Services, now: datetime) -> set[str]:
    """Namespaces of tenants whose API is starting: made less than ``api_start_timeout_seconds`` ago with no API
    Deployment yet, or with one not yet available and within its progress deadline or one period past it
    (:func:`_starting`). Tenants being torn down, failed ones and those later than that hold no slot, or a few
    broken tenants would stop every new one."""
    managed = f"{tenants.LABEL_MANAGED_BY}={tenants.MANAGER}"
    deployments = {
        d["metadata"]["namespace"]: d
        for d in svc.kube.list("apps/v1", "Deployment", None, f"app.kubernetes.io/name={tenants.API},{managed}")
    }
    timeout = svc.settings.api_start_timeout_seconds
    starting = set()
    for namespace in svc.kube.list("v1", "Namespace", None, f"{managed},{tenants.LABEL_TENANT}"):
        meta = namespace["metadata"]
        if (namespace.get("status") or {}).get("phase") == "Terminating" or meta.get("deletionTimestamp"):
            continue
        deployment = deployments.get(meta["name"])
        if deployment is not None:
            if _starting(deployment, now, timeout):
                starting.add(meta["name"])
        elif (now - _at(meta["creationTimestamp"])).total_seconds() < timeout:
            starting.add(meta["name"])
    return starting


def _at(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _starting(deployment: dict[str, Any], now: datetime, timeout: int) -> bool:
    """Not serving yet, and within its progress deadline or one more such period past it (slow pods on a busy
    node are still waited for then, and still take CPU). Later it holds no slot: a few broken tenants must not
    stop every new one."""
    status = deployment.get("status") or {}
    if status.get("availableReplicas"):
        return False
    progressing = _condition(status, "Progressing")
    if progressing.get("reason") != "ProgressDeadlineExceeded":
        return True
    since = progressing.get("lastTransitionTime")
    return since is not None and (now - _at(since)).total_seconds() < timeout


API_POLL_FAST_SECONDS = 5.0  # a tenant API this young is looked at every 0.1 s, an older one every 0.25 s


def api_poll_delay(now: datetime, deployment: dict[str, Any] | None) -> float:
    """How soon to look again at a starting API: often while a new consumer may be waiting on it (a pod is
    typically Ready in 1-2 s), less often later, so that a burst of slow starts does not flood Kubernetes."""
    made = ((deployment or {}).get("metadata") or {}).get("creationTimestamp")
    if made and (now - _at(made)).total_seconds() < API_POLL_FAST_SECONDS:
        return 0.1
    return 0.25


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
    deployment = svc.kube.get("apps/v1", "Deployment", tenants.API, snap.namespace)
    status = (deployment or {}).get("status") or {}
    if not int(status.get("availableReplicas") or 0):
        progressing = _condition(status, "Progressing")
        if progressing.get("status") == "False" and progressing.get("reason") == "ProgressDeadlineExceeded":
            start = api_start(svc, snap.namespace, status)
            timeout = settings.api_start_timeout_seconds
            if start.failures:
                raise TemporaryError(
                    f"the tenant API did not start within {timeout}s: {'; '.join(start.failures)}"[:800]
                )
            began = start.waiting_since or _at((deployment or {})["metadata"]["creationTimestamp"])
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
        token = grant_token(svc, snap.namespace, grant_id)
        if token is None:
            raise NotYet("the grant's token is being written", delay=0.5)
        answer, seen = svc.probe.check(snap.tenant_id, token)
        if answer is Answer.OK:
            continue
        since = _condition(status, "Available").get("lastTransitionTime")
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


def grant_ended(svc: Services, grant: Grant) -> None:
    """Deprovisioned. The connector hears of it when it asked for it (the HTTP provisioner's deprovision
    callback) or when the end was ours (expiry, operator) and its protocol has a way to say so."""
    move(grant, GrantState.DEPROVISIONED)
    if grant.protocol == Protocol.HTTP_PROVISIONER:
        wants_notice = grant.ended_by == EndedBy.DEPROVISION and svc.settings.deprovision_callback
    else:
        wants_notice = grant.ended_by in (EndedBy.EXPIRY, EndedBy.ADMIN)
    if wants_notice:
        grant.deprovision_callback = EndNotice.DUE
        grant.attempts = 0
        grant.next_attempt_at = None
    elif grant.deprovision_callback == EndNotice.DUE:
        grant.deprovision_callback = None  # e.g. a failure notice still due: the connector ended it itself


APPLY: tuple[Step, ...] = (
    Step("start_slot", api_start_slot),
    Step("namespace", ensure_namespace),
    Step("s3_keys", choose_s3_keys, grants=True),
    Step("s3_secret", write_s3_secret),
    Step("token", ensure_tokens, grants=True),
    # In order: a service-account-token Secret made before its ServiceAccount is deleted by Kubernetes.
    Step("rbac", _applier(lambda c: tenants.rbac(c.spec), side_by_side=False)),
    Step("quota", _applier(lambda c: tenants.quota(c.svc.settings, c.spec))),
    Step("network", _applier(lambda c: tenants.network_policies(c.svc.settings, c.spec))),
    Step("config", _applier(lambda c: tenants.config_objects(c.svc.settings, c.spec)), grants=True),
    Step("s3_user", ensure_s3_users),
    Step("api", _applier(lambda c: tenants.api_objects(c.svc.settings, c.spec))),
    Step("templates", apply_templates),
    Step("revoke", revoke_ended_grants, grants=True),
    Step("answers", api_answers, resumable=True, grants=True),
    Step("ready", mark_ready, resumable=True, grants=True),
)


# --- teardown ------------------------------------------------------------------------------------------------


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


TEARDOWN: tuple[Step, ...] = (
    Step("delete_namespace", delete_namespace),
    Step("delete_s3_user", delete_s3_users),
    Step("delete_objects", delete_objects),
    Step("namespace_gone", namespace_gone),
    Step("deleted", mark_deleted),
)


def run_steps(ctx: StepContext, steps: tuple[Step, ...], start: int = 0) -> None:
    """Run ``steps`` in order (from ``start``; with ``ctx.grants_only`` only those marked ``grants``); the crash
    hook fires before each, and a failure carries its step's name and place in ``steps``."""
    for index, step in enumerate(steps[start:], start):
        if ctx.grants_only and not step.grants:
            continue
        ctx.svc.step_hook(step.name)
        began = time.perf_counter()
        try:
            step.run(ctx)
        except Exception as exc:
            raise StepFailed(step.name, exc, index) from exc
        finally:
            ctx.svc.metrics.step_seconds.labels(step.name).observe(time.perf_counter() - began)


class StepFailed(Exception):
    """A step's exception, wrapped (never mutated) with the step's name and its place in the list."""

    def __init__(self, step: str, cause: Exception, index: int = 0) -> None:
        super().__init__(f"{step}: {type(cause).__name__}: {cause}")
        self.step = step
        self.cause = cause
        self.index = index
