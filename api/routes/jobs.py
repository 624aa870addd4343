"""Jobs: start (idempotent), list, show, cancel, delete, logs, outputs and receipts."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Response, status
from fastapi.responses import StreamingResponse

from api.core.errors import HTTPProblem, KubeRejected, KubeUnavailable, RangeNotSatisfiable, not_found, over_limit
from api.core.schemas import Job, JobCreate, JobList, OutputFile, OutputList, Receipt
from api.core.states import PHASE_SELECTOR, JobState, job_state
from api.routes.deps import TenantDep
from api.services import downloads
from api.services.jobviews import job_asset, job_view, leftover_job, output_key, settled, workflow_of
from api.services.logs import archived_log, live_log
from api.services.receipts import receipt_of
from api.services.starting import start
from api.services.tenant import FOLLOWS_MAX
from api.services.webhooks import records as webhook_records
from api.web.ranges import parse_range
from templates.jobs import env_secret_name
from templates.labels import LABEL_ASSET, LABEL_MANAGED_BY, LABEL_WEBHOOK, MANAGER
from templates.names import dns_label

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

JobPath = Annotated[str, Path(max_length=64, description="Job id, e.g. job-1f2e3d4c5b6a7988.")]


@router.post(
    "",
    response_model=Job,
    status_code=status.HTTP_201_CREATED,
    summary="Start a job from an asset",
    responses={
        200: {"description": "an earlier start with the same Idempotency-Key", "model": Job},
        409: {"description": "required inputs missing, or Idempotency-Key reused with another body"},
        429: {"description": "the contract's concurrent-job quota is reached"},
    },
)
async def start_job(
    body: JobCreate,
    tenant: TenantDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> Response:
    return await start(tenant, body, idempotency_key)


@router.get("", response_model=JobList, summary="List jobs (filter by asset and state; paginated)")
async def list_jobs(
    tenant: TenantDep,
    asset: Annotated[str | None, Query(max_length=128)] = None,
    state: JobState | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    page: Annotated[str | None, Query(max_length=4096, description="`next` of the previous page.")] = None,
) -> JobList:
    selector = [f"{LABEL_MANAGED_BY}={MANAGER}"]
    if asset is not None:
        tenant.require(asset)
        selector.append(f"{LABEL_ASSET}={dns_label(asset)}")
    if state is not None:
        selector.append(PHASE_SELECTOR[state])
    result = await tenant.argo.list(",".join(selector), limit, page)
    jobs = list(await asyncio.gather(*(settled(tenant, wf) for wf in result.items or [])))
    if state is not None:
        jobs = [j for j in jobs if j.state is state]
    if asset is not None:
        jobs = [j for j in jobs if j.asset == asset]
    jobs = [j for j in jobs if tenant.allows(j.asset)]  # another contract's jobs are not this token's to see
    cont = result.metadata.continue_ if result.metadata else None
    return JobList(items=jobs, next=cont or None)


@router.get("/{job}", response_model=Job, summary="Show a job (with its completion event's delivery, if any)")
async def get_job(job: JobPath, tenant: TenantDep) -> Job:
    wf = await workflow_of(tenant, job)
    view = await settled(tenant, wf)
    if LABEL_WEBHOOK in (wf.metadata.labels or {}):
        view = view.model_copy(update={"webhook": await webhook_records.read(tenant.storage, job)})
    return view


@router.post("/{job}/cancel", response_model=Job, summary="Cancel a job")
async def cancel_job(job: JobPath, tenant: TenantDep) -> Job:
    wf = await workflow_of(tenant, job)
    if job_state(wf).finished:
        raise HTTPProblem(409, "Conflict", f"job {job} has already finished ({job_state(wf).value})")
    return job_view(tenant, await tenant.argo.terminate(job))


@router.delete("/{job}", status_code=status.HTTP_204_NO_CONTENT, summary="Delete a job and its objects")
async def delete_job(job: JobPath, tenant: TenantDep) -> None:
    try:
        await workflow_of(tenant, job)
    except HTTPProblem as missing:
        # A job whose Workflow expired (Argo's TTL) or never came may have left keys that count against the quota
        # (GET /v1/usage/storage lists them): they are the consumer's to delete too.
        if missing.status != 404 or not await leftover_job(tenant, job):
            raise
        await tenant.job_keys.revoke_quietly(job)
        await tenant.storage.delete_prefix(tenant.storage.keys.job(job))
        await tenant.storage.delete_prefix(tenant.storage.keys.executor(job))
        return
    await tenant.job_keys.revoke(job)  # a running job's keys end with it
    await tenant.argo.delete(job)
    # Best effort: the Workflow owns the Secret, so Kubernetes removes it anyway.
    with contextlib.suppress(KubeUnavailable, KubeRejected):
        await tenant.kube.delete_secret(env_secret_name(job))
    await tenant.storage.delete_prefix(tenant.storage.keys.job(job))
    await tenant.storage.delete_prefix(tenant.storage.keys.executor(job))


@router.get(
    "/{job}/logs",
    summary="The worker's log (live with follow=true; from the archive once the pod is gone)",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/plain": {}}}},
)
async def job_logs(job: JobPath, tenant: TenantDep, follow: bool = False) -> StreamingResponse:
    wf = await workflow_of(tenant, job)
    archived = await tenant.storage.list_prefix(tenant.storage.keys.job_logs(job))
    if job_state(wf).finished and archived:
        return StreamingResponse(archived_log(tenant, archived), media_type="text/plain; charset=utf-8")
    if follow and tenant.follows.locked():  # each follow holds a connection to Kubernetes for as long as it runs
        raise over_limit(429, "too many logs are being followed at once; retry later", "followed_logs", FOLLOWS_MAX)
    live = live_log(tenant, job, follow, wait=not job_state(wf).finished)
    # Pull the first piece before answering, so that a failure becomes a proper error status.
    try:
        head = await anext(live)
    except StopAsyncIteration:
        head = b""
    held = tenant.follows if follow else None
    return StreamingResponse(_after(head, live, held), media_type="text/plain; charset=utf-8")


async def _after(head: bytes, rest: AsyncIterator[bytes], held: asyncio.Semaphore | None) -> AsyncIterator[bytes]:
    """The log, holding a place among the followed ones (if it is followed) while it streams."""
    async with held or contextlib.nullcontext():
        if head:
            yield head
        async for part in rest:
            yield part


@router.get("/{job}/outputs", response_model=OutputList, summary="List a job's outputs")
async def list_outputs(job: JobPath, tenant: TenantDep) -> OutputList:
    wf = await workflow_of(tenant, job)
    asset = await job_asset(tenant, wf)
    if not job_state(wf).finished:
        return OutputList(job=job, items=[])  # outputs are sealed when the job has finished
    sealed = await tenant.sealing.seal(tenant.storage, asset, job, wf.metadata.uid or "")
    items = [
        OutputFile(name=out.name, size=sealed.outputs[out.name]["size"], sha256=sealed.outputs[out.name]["sha256"])
        for out in asset.outputs
        if out.name in sealed.outputs
    ]
    return OutputList(job=job, items=items, missing=sealed.missing)


@router.get(
    "/{job}/outputs/{name}",
    summary="Download an output (streamed; HTTP Range supported)",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}},
        206: {"description": "partial content"},
        307: {"description": "large output: a presigned URL of the object store, for this object alone, valid minutes"},
        416: {"description": "range not satisfiable"},
    },
)
async def download_output(
    job: JobPath,
    name: Annotated[str, Path(max_length=128)],
    tenant: TenantDep,
    range_: Annotated[str | None, Header(alias="range")] = None,
) -> Response:
    wf = await workflow_of(tenant, job)
    asset = await job_asset(tenant, wf)
    try:
        key = output_key(tenant, asset, job, name)
    except (KeyError, ValueError):
        raise not_found(f"output {name!r}") from None
    if not job_state(wf).finished:
        raise HTTPProblem(409, "Conflict", f"job {job} has not finished: outputs are handed out once it has")
    sealed = await tenant.sealing.seal(tenant.storage, asset, job, wf.metadata.uid or "")
    if name not in sealed.outputs:
        why = sealed.missing.get(name, "not produced")
        raise HTTPProblem(404, "Not Found", f"output {name!r} of job {job} does not exist: {why}")
    size = int(sealed.outputs[name]["size"])
    filename = key.rsplit("/", 1)[-1]
    redirect = downloads.presigned_download(tenant, key, size, filename)
    if redirect is not None:
        return redirect
    headers = {
        "Accept-Ranges": "bytes",
        "Content-Disposition": f'attachment; filename="{filename}"',
    }
    try:
        wanted = parse_range(range_, size)
    except RangeNotSatisfiable as exc:
        raise HTTPProblem(416, "Range Not Satisfiable", str(exc), {"Content-Range": f"bytes */{size}"}) from None
    start, end, code = wanted.start, wanted.end, 206 if wanted.partial else 200
    if wanted.partial:
        headers["Content-Range"] = wanted.content_range(size)
    headers["Content-Length"] = str(end - start)
    return StreamingResponse(
        tenant.storage.read_range(key, start, end),
        status_code=code,
        media_type="application/octet-stream",
        headers=headers,
    )


@router.get("/{job}/receipt", response_model=Receipt, summary="The job's receipt (finished jobs)")
async def job_receipt(job: JobPath, tenant: TenantDep) -> Receipt:
    wf = await workflow_of(tenant, job)
    if not job_state(wf).finished:
        raise HTTPProblem(409, "Conflict", f"job {job} has not finished yet")
    return await receipt_of(tenant, wf, await job_asset(tenant, wf))
