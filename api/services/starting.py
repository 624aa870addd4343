"""Starting a job: idempotency, input checks and snapshots, the quota, the environment Secret, the Workflow."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Response
from fastapi.responses import JSONResponse

from api.core import workflow as m
from api.core.errors import (
    ArgoConflict,
    ArgoNotFound,
    ArgoRejected,
    HTTPProblem,
    KubeRejected,
    KubeUnavailable,
    QuotaFull,
    Replay,
    StorageUnavailable,
    TargetRefused,
    TooLarge,
    over_limit,
)
from api.core.schemas import JobCreate
from api.services import staging
from api.services.jobviews import job_view
from api.services.ledger import QuotaExceeded
from api.services.staging import max_env_bytes
from api.services.tenant import TenantContext
from api.services.webhooks import config as webhook_config
from api.services.webhooks import records as webhook_records
from api.services.webhooks.records import new_delivery
from templates import Input, InputKind, WorkflowAsset, job_workflow, new_job_id, resolve_env
from templates.envvars import EnvError
from templates.jobs import env_secret, env_secret_name, s3_secret_name
from templates.labels import (
    ANNOTATION_REQUEST,
    WebhookMark,
)


def job_id_for(tenant: TenantContext, idempotency_key: str | None) -> str:
    if idempotency_key is None:
        return new_job_id()
    # Same key → same job id: a retried start finds the job it already created, even under races.
    digest = hashlib.sha256(f"{tenant.settings.tenant}\x00{idempotency_key}".encode()).hexdigest()
    return f"job-{digest[:20]}"


def request_digest(body: JobCreate) -> str:
    return hashlib.sha256(json.dumps(body.model_dump(), sort_keys=True).encode()).hexdigest()


async def check_inputs(tenant: TenantContext, asset: WorkflowAsset) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Required file inputs are staged; returns the staged records and the dotenv texts of env inputs."""
    env_inputs = [i for i in asset.inputs if i.kind is InputKind.ENV]

    async def env_text(item: Input) -> str | BaseException | None:
        # Read with the records, not after them: one S3 round trip less. Only staged ones count (below).
        try:
            return await staging.read_staged_text(tenant.storage, asset.name, item.name, max_env_bytes(asset, item))
        except FileNotFoundError:
            return None
        except (TooLarge, UnicodeDecodeError) as exc:
            return exc

    records, texts = await asyncio.gather(
        asyncio.gather(*(staging.staged_input(tenant.storage, asset.name, i.name) for i in asset.inputs)),
        asyncio.gather(*(env_text(i) for i in env_inputs)),
    )
    staged = {i.name: r for i, r in zip(asset.inputs, records, strict=True) if r is not None}
    missing = [i.name for i in asset.inputs if i.required and i.kind is not InputKind.ENV and i.name not in staged]
    if missing:
        raise HTTPProblem(409, "Conflict", f"required inputs not uploaded yet: {', '.join(missing)}")
    dotenv: dict[str, str] = {}
    for item, text in zip(env_inputs, texts, strict=True):
        if item.name not in staged:
            continue  # data without its record is not there (an upload in progress, or being deleted)
        if isinstance(text, BaseException):
            raise HTTPProblem(422, "Unprocessable Content", f"env input: {text}") from None
        if text is None:
            raise StorageUnavailable("a staged env input's data is missing")
        dotenv[item.name] = text
    return staged, dotenv


async def webhook_target(tenant: TenantContext, body: JobCreate) -> str | None:
    """Where the job's completion event goes: the start's own URL, else the tenant's default, else nowhere."""
    if body.webhook_url is not None:
        try:
            tenant.webhook_policy.check_url(body.webhook_url)
        except TargetRefused as exc:
            raise HTTPProblem(422, "Unprocessable Content", str(exc)) from None
    cfg = await webhook_config.load(tenant.storage)
    if body.webhook_url is not None:
        if cfg is None or cfg.current() is None:
            detail = "no webhook signing secret yet: register the tenant's webhook (PUT /v1/webhook) first"
            raise HTTPProblem(409, "Conflict", detail)
        return body.webhook_url
    return cfg.url if cfg is not None else None


def _over_quota(tenant: TenantContext) -> HTTPProblem:
    limit = tenant.settings.quota_concurrent_jobs
    problem = over_limit(429, f"at most {limit} jobs may run at once", "concurrent_jobs", limit, 0)
    problem.headers = {"Retry-After": "30"}
    return problem


async def check_quota(tenant: TenantContext) -> None:
    try:
        await tenant.start_lock.precheck(tenant.kube.running_jobs, tenant.settings.quota_concurrent_jobs)
    except QuotaFull:
        raise _over_quota(tenant) from None


@asynccontextmanager
async def storage_for(
    tenant: TenantContext, asset: WorkflowAsset, job_id: str, staged: dict[str, dict[str, Any]]
) -> AsyncIterator[None]:
    """A job's snapshot of its inputs is stored too: its bytes are reserved in the contract's storage quota while
    it is written (concurrent starts and uploads see each other's)."""
    needed = sum(
        int(r.get("size") or 0) for i in asset.inputs if (r := staged.get(i.name)) and i.kind is not InputKind.ENV
    )
    if not needed:
        yield
        return
    try:
        snapshot = f"{tenant.storage.keys.job(job_id)}/inputs"
        reservation = tenant.ledger.reserve(tenant.storage, tenant.settings.quota_storage_bytes, needed, snapshot)
        async with reservation:
            yield
    except QuotaExceeded as exc:
        detail = (
            f"the job's inputs ({needed} bytes) do not fit the contract's storage quota ({exc}); delete jobs or inputs"
        )
        raise over_limit(413, detail, "storage_bytes", exc.quota, exc.free) from None


async def write_job_secret(tenant: TenantContext, job_id: str, manifest: dict[str, Any]) -> None:
    """Write one of the job's own Secrets. One of that name exists only after an earlier attempt with the same
    Idempotency-Key: if that attempt's Workflow exists, its Secret is left alone (the start replays or conflicts);
    otherwise the earlier attempt died before creating it, and its Secret is replaced."""
    if await tenant.kube.create_secret(manifest):
        return
    try:
        existing = await tenant.argo.get(job_id)
    except ArgoNotFound:
        await tenant.kube.replace_secret(manifest)
        return
    raise Replay(existing)


async def write_env_secret(tenant: TenantContext, job_id: str, env: dict[str, str]) -> None:
    await write_job_secret(tenant, job_id, env_secret(job_id, env, tenant.settings.tenant))


async def write_s3_secret(tenant: TenantContext, job_id: str, asset: WorkflowAsset) -> None:
    """The job's own S3 keys (api.services.jobkeys), minted now for this job alone."""
    await write_job_secret(tenant, job_id, await tenant.job_keys.secret(job_id, asset.limits.timeout))


def replay(tenant: TenantContext, wf: m.Workflow, digest: str) -> Response:
    if (wf.metadata.annotations or {}).get(ANNOTATION_REQUEST) != digest:
        raise HTTPProblem(409, "Conflict", "Idempotency-Key was already used for a different request")
    return JSONResponse(job_view(tenant, wf).model_dump(mode="json"), status_code=200)


async def _undo(tenant: TenantContext, job_id: str, has_env: bool) -> None:
    """A start refused after its snapshot: nothing of it stays (no Workflow would let the consumer delete it, and it
    would count against the storage quota until the sweeper came), and its keys end now."""
    await tenant.job_keys.revoke_quietly(job_id)
    if has_env:
        with contextlib.suppress(KubeUnavailable, KubeRejected):
            await tenant.kube.delete_secret(env_secret_name(job_id))
    with contextlib.suppress(StorageUnavailable):  # else the sweeper takes it later
        await tenant.storage.delete_prefix(tenant.storage.keys.job(job_id))


async def start(tenant: TenantContext, body: JobCreate, idempotency_key: str | None) -> Response:
    """Start ``body.asset`` once: 201 with the new job, or 200 replaying an earlier start with the same key."""
    asset = await tenant.asset(body.asset)
    job_id = job_id_for(tenant, idempotency_key)
    digest = request_digest(body)
    if idempotency_key is not None:
        try:
            existing = await tenant.argo.get(job_id)
        except ArgoNotFound:
            existing = None
        if existing is not None:
            return replay(tenant, existing, digest)
    (staged, dotenv), _, hook = await asyncio.gather(
        check_inputs(tenant, asset), check_quota(tenant), webhook_target(tenant, body)
    )
    try:
        env = resolve_env(asset, dotenv, body.parameters)
    except EnvError as exc:
        raise HTTPProblem(422, "Unprocessable Content", str(exc)) from None
    # Snapshot first: the job reads only its own keys, so later uploads never change it. Env inputs need
    # none: their values travel in the job's own Secret (written alongside), their digests as an annotation.
    has_env = any(i.kind is InputKind.ENV for i in asset.inputs)
    try:
        async with storage_for(tenant, asset, job_id, staged):
            await asyncio.gather(
                *(
                    staging.snapshot_input(tenant.storage, asset.name, item.name, job_id, staged[item.name])
                    for item in asset.inputs
                    if item.kind is not InputKind.ENV and item.name in staged
                ),
                *([write_env_secret(tenant, job_id, env)] if has_env else []),
                write_s3_secret(tenant, job_id, asset),
                # Before the Workflow: a job that finishes always finds where its event goes.
                *([webhook_records.write(tenant.storage, job_id, new_delivery(hook))] if hook else []),
            )
    except Replay as found:
        return replay(tenant, found.workflow, digest)
    except BaseException:
        # Nothing of a start that failed before its Workflow stays, its own keys least of all (no Workflow would
        # ever settle them). Shielded: a request cancelled midway still cleans up.
        await asyncio.shield(_undo(tenant, job_id, has_env))
        raise
    env_digests = {name: hashlib.sha256(text.encode()).hexdigest() for name, text in dotenv.items()}
    manifest = job_workflow(
        asset,
        namespace=tenant.settings.namespace,
        job_id=job_id,
        tenant=tenant.settings.tenant,
        idempotency_key=hashlib.sha256(idempotency_key.encode()).hexdigest() if idempotency_key else None,
        request_digest=digest,
        env_digests=env_digests,
        input_digests={name: str(record["sha256"]) for name, record in staged.items() if record.get("sha256")},
        webhook=WebhookMark.PENDING if hook else None,
    )
    try:
        async with tenant.start_lock.slot(
            job_id, tenant.kube.running_jobs, tenant.settings.quota_concurrent_jobs, refused=(ArgoRejected,)
        ):
            wf = await tenant.argo.create(manifest)
    except QuotaFull:
        await _undo(tenant, job_id, has_env)
        raise _over_quota(tenant) from None
    except ArgoConflict:
        return replay(tenant, await tenant.argo.get(job_id), digest)
    except ArgoRejected:
        await _undo(tenant, job_id, has_env)
        raise
    if wf.metadata.uid:
        owner = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "name": job_id, "uid": wf.metadata.uid}
        # Best effort: without the owner the Secrets still go with the job's end (keys) and its delete route.
        for name in [s3_secret_name(job_id), *([env_secret_name(job_id)] if has_env else [])]:
            with contextlib.suppress(KubeUnavailable, KubeRejected):
                await tenant.kube.own_secret(name, owner)
    return JSONResponse(job_view(tenant, wf).model_dump(mode="json"), status_code=201)
