"""Jobs: start (idempotent), list, show, cancel, delete, logs, outputs and receipts."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Response, status
from fastapi.responses import JSONResponse, StreamingResponse
from hera.workflows import models as m

from api.argo import ArgoConflict, ArgoNotFound, ArgoRejected
from api.context import Tenant, TenantDep
from api.errors import ApiError, not_found
from api.kube import KubeRejected, KubeUnavailable
from api.outputs import seal
from api.ranges import RangeNotSatisfiable, parse_range
from api.routes.assets import max_env_bytes
from api.schemas import Job, JobCreate, JobList, OutputFile, OutputList, Receipt, StepInfo
from api.states import PHASE_SELECTOR, JobState, job_state
from api.storage import StorageUnavailable, TooLarge
from templates import Input, InputKind, OutputKind, WorkflowAsset, job_workflow, new_job_id, resolve_env
from templates.compiler import LABEL_ASSET, LABEL_MANAGED_BY, MANAGER
from templates.envvars import EnvError
from templates.jobs import JOB_ID, env_secret, env_secret_name
from templates.names import dns_label

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

JobPath = Annotated[str, Path(max_length=64, description="Job id, e.g. job-1f2e3d4c5b6a7988.")]
ANNOTATION_REQUEST = "workflow-middlelayer.io/request-sha256"
ANNOTATION_ENV_DIGESTS = "workflow-middlelayer.io/env-sha256"  # {input name: sha256 of its dotenv text}
# {input name: sha256 as uploaded (a file) or the staged tree digest (a directory)}, taken when the job started
ANNOTATION_INPUT_DIGESTS = "workflow-middlelayer.io/input-sha256"
# Argo's emissary executor logs into the main container's stream; those lines are not the worker's.
_EXECUTOR_LINE = re.compile(r"^time=\S+ level=\w+ msg=.*\bargo=true\b")


def _worker_line(line: str) -> bool:
    return not _EXECUTOR_LINE.match(line)


def _job_id(tenant: Tenant, idempotency_key: str | None) -> str:
    if idempotency_key is None:
        return new_job_id()
    # Same key → same job id: a retried start finds the job it already created, even under races.
    digest = hashlib.sha256(f"{tenant.settings.tenant}\x00{idempotency_key}".encode()).hexdigest()
    return f"job-{digest[:20]}"


def _ui_url(tenant: Tenant, name: str) -> str | None:
    base = tenant.settings.argo_ui_url
    return f"{base.rstrip('/')}/workflows/{tenant.settings.namespace}/{name}" if base else None


def _job(tenant: Tenant, wf: m.Workflow) -> Job:
    meta = wf.metadata
    labels = meta.labels or {}
    st = wf.status
    nodes = (st.nodes if st else None) or {}
    steps = [
        StepInfo(
            name=n.display_name or n.name or node_id,
            type=n.type,
            phase=n.phase,
            started_at=_ts(n.started_at),
            finished_at=_ts(n.finished_at),
            message=n.message,
            pod=node_id if n.type == "Pod" else None,
        )
        for node_id, n in sorted(nodes.items(), key=lambda kv: str(kv[1].started_at or ""))
    ]
    name = meta.name or ""
    return Job(
        id=name,
        asset=(meta.annotations or {}).get("workflow-middlelayer.io/asset-name", labels.get(LABEL_ASSET, "")),
        state=job_state(wf),
        argo_phase=st.phase if st else None,
        message=st.message if st else None,
        created_at=_ts(meta.creation_timestamp),
        started_at=_ts(st.started_at) if st else None,
        finished_at=_ts(st.finished_at) if st else None,
        steps=steps,
        ui_url=_ui_url(tenant, name),
    )


async def _settled(tenant: Tenant, wf: m.Workflow, job: Job | None = None) -> Job:
    """The job as Argo reports it, except that a run whose required outputs are missing did not complete: the
    outputs are checked when they are sealed (Argo collects the output directory, not each output)."""
    job = job or _job(tenant, wf)
    if job.state is not JobState.COMPLETE:
        return job
    name = (wf.metadata.annotations or {}).get("workflow-middlelayer.io/asset-name")
    asset = await tenant.catalogue.get(name) if name else None
    if asset is None or not any(o.required for o in asset.outputs):
        return job
    try:
        missing = (await seal(tenant.storage, asset, job.id)).required_missing(asset)
    except StorageUnavailable:
        return job  # S3 briefly away: Argo's word stands until the outputs can be sealed
    if missing:
        return job.model_copy(
            update={"state": JobState.EXECUTOR_ERROR, "message": f"required outputs missing: {', '.join(missing)}"}
        )
    return job


def _ts(value: Any) -> datetime | None:
    if value is None:
        return None
    root = getattr(value, "root", value)
    if isinstance(root, datetime):
        return root
    return datetime.fromisoformat(str(root).replace("Z", "+00:00")) if str(root) else None


async def _workflow(tenant: Tenant, job: str) -> m.Workflow:
    if not JOB_ID.match(job):
        raise not_found(f"job {job!r}")
    try:
        wf = await tenant.argo.get(job)
    except ArgoNotFound:
        raise not_found(f"job {job!r}") from None
    if (wf.metadata.labels or {}).get(LABEL_MANAGED_BY) != MANAGER:
        raise not_found(f"job {job!r}")
    return wf


def _request_digest(body: JobCreate) -> str:
    return hashlib.sha256(json.dumps(body.model_dump(), sort_keys=True).encode()).hexdigest()


async def _check_inputs(tenant: Tenant, asset: WorkflowAsset) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Required file inputs are staged; returns the staged records and the dotenv texts of env inputs."""
    env_inputs = [i for i in asset.inputs if i.kind is InputKind.ENV]

    async def env_text(item: Input) -> str | BaseException | None:
        # Read with the records, not after them: one S3 round trip less. Only staged ones count (below).
        try:
            return await tenant.storage.read_staged_text(asset.name, item.name, max_env_bytes(asset, item))
        except FileNotFoundError:
            return None
        except (TooLarge, UnicodeDecodeError) as exc:
            return exc

    records, texts = await asyncio.gather(
        asyncio.gather(*(tenant.storage.staged_input(asset.name, i.name) for i in asset.inputs)),
        asyncio.gather(*(env_text(i) for i in env_inputs)),
    )
    staged = {i.name: r for i, r in zip(asset.inputs, records, strict=True) if r is not None}
    missing = [i.name for i in asset.inputs if i.required and i.kind is not InputKind.ENV and i.name not in staged]
    if missing:
        raise ApiError(409, "Conflict", f"required inputs not uploaded yet: {', '.join(missing)}")
    dotenv: dict[str, str] = {}
    for item, text in zip(env_inputs, texts, strict=True):
        if item.name not in staged:
            continue  # data without its record is not there (an upload in progress, or being deleted)
        if isinstance(text, BaseException):
            raise ApiError(422, "Unprocessable Content", f"env input: {text}") from None
        if text is None:
            raise StorageUnavailable("a staged env input's data is missing")
        dotenv[item.name] = text
    return staged, dotenv


async def _check_quota(tenant: Tenant) -> None:
    if await tenant.argo.count_active() >= tenant.settings.quota_concurrent_jobs:
        raise ApiError(
            429,
            "Too Many Requests",
            f"at most {tenant.settings.quota_concurrent_jobs} jobs may run at once",
            {"Retry-After": "30"},
        )


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
    asset = await tenant.asset(body.asset)
    job_id = _job_id(tenant, idempotency_key)
    digest = _request_digest(body)
    if idempotency_key is not None:
        try:
            existing = await tenant.argo.get(job_id)
        except ArgoNotFound:
            existing = None
        if existing is not None:
            return _replay(tenant, existing, digest)
    (staged, dotenv), _ = await asyncio.gather(_check_inputs(tenant, asset), _check_quota(tenant))
    try:
        env = resolve_env(asset, dotenv, body.parameters)
    except EnvError as exc:
        raise ApiError(422, "Unprocessable Content", str(exc)) from None
    # Snapshot first: the job reads only its own keys, so later uploads never change it. Env inputs need
    # none: their values travel in the job's own Secret (written alongside), their digests as an annotation.
    has_env = any(i.kind is InputKind.ENV for i in asset.inputs)
    try:
        await asyncio.gather(
            *(
                tenant.storage.snapshot_input(asset.name, item.name, job_id, staged[item.name])
                for item in asset.inputs
                if item.kind is not InputKind.ENV and item.name in staged
            ),
            *([_env_secret(tenant, job_id, env)] if has_env else []),
        )
    except _Replay as replay:
        return _replay(tenant, replay.workflow, digest)
    env_digests = {name: hashlib.sha256(text.encode()).hexdigest() for name, text in dotenv.items()}
    manifest = job_workflow(
        asset,
        namespace=tenant.settings.namespace,
        job_id=job_id,
        tenant=tenant.settings.tenant,
        idempotency_key=hashlib.sha256(idempotency_key.encode()).hexdigest() if idempotency_key else None,
    ).to_dict()
    manifest["metadata"].setdefault("annotations", {}).update(
        {
            ANNOTATION_REQUEST: digest,
            ANNOTATION_ENV_DIGESTS: json.dumps(env_digests, sort_keys=True),
            ANNOTATION_INPUT_DIGESTS: json.dumps(
                {name: str(record["sha256"]) for name, record in staged.items() if record.get("sha256")},
                sort_keys=True,
            ),
            "workflow-middlelayer.io/asset-name": asset.name,
        }
    )
    try:
        wf = await tenant.argo.create(manifest)
    except ArgoConflict:
        return _replay(tenant, await tenant.argo.get(job_id), digest)
    except ArgoRejected:
        if has_env:
            with contextlib.suppress(KubeUnavailable, KubeRejected):
                await tenant.kube.delete_secret(env_secret_name(job_id))
        raise
    if has_env and wf.metadata.uid:
        owner = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "name": job_id, "uid": wf.metadata.uid}
        # Best effort: without the owner the Secret still goes with the job's delete route.
        with contextlib.suppress(KubeUnavailable, KubeRejected):
            await tenant.kube.own_secret(env_secret_name(job_id), owner)
    return JSONResponse(_job(tenant, wf).model_dump(mode="json"), status_code=201)


async def _env_secret(tenant: Tenant, job_id: str, env: dict[str, str]) -> None:
    """Write the job's environment Secret. One of that name exists only after an earlier attempt with the same
    Idempotency-Key: if that attempt's Workflow exists, its Secret is left alone (the start replays or conflicts);
    otherwise the earlier attempt died before creating it, and its Secret is replaced."""
    manifest = env_secret(job_id, env, tenant.settings.tenant)
    if await tenant.kube.create_secret(manifest):
        return
    try:
        existing = await tenant.argo.get(job_id)
    except ArgoNotFound:
        await tenant.kube.replace_secret(manifest)
        return
    raise _Replay(existing)


class _Replay(Exception):
    """The job exists already: answer as a replay of its start."""

    def __init__(self, workflow: m.Workflow) -> None:
        super().__init__(workflow.metadata.name)
        self.workflow = workflow


def _replay(tenant: Tenant, wf: m.Workflow, digest: str) -> Response:
    if (wf.metadata.annotations or {}).get(ANNOTATION_REQUEST) != digest:
        raise ApiError(409, "Conflict", "Idempotency-Key was already used for a different request")
    return JSONResponse(_job(tenant, wf).model_dump(mode="json"), status_code=200)


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
        selector.append(f"{LABEL_ASSET}={dns_label(asset)}")
    if state is not None:
        selector.append(PHASE_SELECTOR[state])
    result = await tenant.argo.list(",".join(selector), limit, page)
    jobs = list(await asyncio.gather(*(_settled(tenant, wf) for wf in result.items or [])))
    if state is not None:
        jobs = [j for j in jobs if j.state is state]
    if asset is not None:
        jobs = [j for j in jobs if j.asset == asset]
    cont = result.metadata.continue_ if result.metadata else None
    return JobList(items=jobs, next=cont or None)


@router.get("/{job}", response_model=Job, summary="Show a job")
async def get_job(job: JobPath, tenant: TenantDep) -> Job:
    return await _settled(tenant, await _workflow(tenant, job))


@router.post("/{job}/cancel", response_model=Job, summary="Cancel a job")
async def cancel_job(job: JobPath, tenant: TenantDep) -> Job:
    wf = await _workflow(tenant, job)
    if job_state(wf).finished:
        raise ApiError(409, "Conflict", f"job {job} has already finished ({job_state(wf).value})")
    return _job(tenant, await tenant.argo.terminate(job))


@router.delete("/{job}", status_code=status.HTTP_204_NO_CONTENT, summary="Delete a job and its objects")
async def delete_job(job: JobPath, tenant: TenantDep) -> None:
    await _workflow(tenant, job)
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
    wf = await _workflow(tenant, job)
    archived = await tenant.storage.list_prefix(tenant.storage.keys.job_logs(job))
    if job_state(wf).finished and archived:
        return StreamingResponse(_archived(tenant, archived), media_type="text/plain; charset=utf-8")
    lines = tenant.argo.log_lines(job, follow)
    # Pull the first line before answering, so that a failure becomes a proper error status.
    try:
        head: str | None = await anext(lines)
    except StopAsyncIteration:
        head = None
    return StreamingResponse(_live(head, lines), media_type="text/plain; charset=utf-8")


async def _live(head: str | None, lines: AsyncIterator[str]) -> AsyncIterator[bytes]:
    if head is not None and _worker_line(head):
        yield (head + "\n").encode()
    async for line in lines:
        if _worker_line(line):
            yield (line + "\n").encode()


async def _archived(tenant: Tenant, entries: list[dict[str, Any]]) -> AsyncIterator[bytes]:
    for entry in entries:
        if not entry["key"].endswith("main.log"):
            continue
        rest = b""
        async for chunk in tenant.storage.read_range(entry["key"], 0, entry["size"]):
            *lines, rest = (rest + chunk).split(b"\n")
            kept = [line for line in lines if _worker_line(line.decode(errors="replace"))]
            if kept:
                yield b"\n".join(kept) + b"\n"
        if rest and _worker_line(rest.decode(errors="replace")):
            yield rest + b"\n"


def _output_key(tenant: Tenant, asset: WorkflowAsset, job: str, name: str) -> str:
    out = asset.output(name)
    return tenant.storage.keys.job_output(job, name, directory=out.kind is OutputKind.DIRECTORY)


async def _job_asset(tenant: Tenant, wf: m.Workflow) -> WorkflowAsset:
    name = (wf.metadata.annotations or {}).get("workflow-middlelayer.io/asset-name")
    asset = await tenant.catalogue.get(name) if name else None
    if asset is None:
        raise ApiError(410, "Gone", "the job's asset is no longer contracted")
    return asset


@router.get("/{job}/outputs", response_model=OutputList, summary="List a job's outputs")
async def list_outputs(job: JobPath, tenant: TenantDep) -> OutputList:
    wf = await _workflow(tenant, job)
    asset = await _job_asset(tenant, wf)
    if not job_state(wf).finished:
        return OutputList(job=job, items=[])  # outputs are sealed when the job has finished
    sealed = await seal(tenant.storage, asset, job)
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
        416: {"description": "range not satisfiable"},
    },
)
async def download_output(
    job: JobPath,
    name: Annotated[str, Path(max_length=128)],
    tenant: TenantDep,
    range_: Annotated[str | None, Header(alias="range")] = None,
) -> Response:
    wf = await _workflow(tenant, job)
    asset = await _job_asset(tenant, wf)
    try:
        key = _output_key(tenant, asset, job, name)
    except (KeyError, ValueError):
        raise not_found(f"output {name!r}") from None
    if not job_state(wf).finished:
        raise ApiError(409, "Conflict", f"job {job} has not finished: outputs are handed out once it has")
    sealed = await seal(tenant.storage, asset, job)
    if name not in sealed.outputs:
        why = sealed.missing.get(name, "not produced")
        raise ApiError(404, "Not Found", f"output {name!r} of job {job} does not exist: {why}")
    size = int(sealed.outputs[name]["size"])
    filename = key.rsplit("/", 1)[-1]
    headers = {
        "Accept-Ranges": "bytes",
        "Content-Disposition": f'attachment; filename="{filename}"',
    }
    try:
        wanted = parse_range(range_, size)
    except RangeNotSatisfiable as exc:
        raise ApiError(416, "Range Not Satisfiable", str(exc), {"Content-Range": f"bytes */{size}"}) from None
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


def _env_digests(annotation: str | None) -> dict[str, str]:
    """{env input: sha256} from the job's annotation; nothing for a missing or mangled one."""
    try:
        value = json.loads(annotation) if annotation else {}
    except ValueError:
        return {}
    return {k: v for k, v in value.items() if isinstance(v, str)} if isinstance(value, dict) else {}


async def _receipt(tenant: Tenant, wf: m.Workflow, asset: WorkflowAsset) -> Receipt:
    job = wf.metadata.name or ""
    key = tenant.storage.keys.job_receipt(job)
    cached = await tenant.storage.read_json(key)
    if cached:
        return Receipt.model_validate(cached)
    info = _job(tenant, wf)
    annotations = wf.metadata.annotations or {}
    annotated = annotations.get(ANNOTATION_ENV_DIGESTS)
    # What the consumer uploaded, as the upload answered it: the same digest for every job that used it.
    inputs = {**_env_digests(annotations.get(ANNOTATION_INPUT_DIGESTS)), **_env_digests(annotated)}
    for item in asset.inputs:
        if item.name in inputs:
            continue
        if item.kind is InputKind.ENV:
            if annotated is None:  # jobs started by earlier releases kept the digest as an object
                record = await tenant.storage.read_json(f"{tenant.storage.keys.job_input(job, item.name)}.sha256.json")
                if record:
                    inputs[item.name] = record["sha256"]
            continue
        # Jobs started by earlier releases: a digest over the job's own snapshot (it names the job's keys).
        entries = await tenant.storage.list_prefix(tenant.storage.keys.job_input(job, item.name))
        if entries:
            digests = [f"{await tenant.storage.sha256(e['key'])}  {e['key']}" for e in entries]
            inputs[item.name] = hashlib.sha256("\n".join(digests).encode()).hexdigest()
    sealed = await seal(tenant.storage, asset, job)
    outputs = {name: str(record["sha256"]) for name, record in sealed.outputs.items()}
    info = await _settled(tenant, wf, info)
    receipt = Receipt(
        job=job,
        tenant=tenant.settings.tenant,
        contract_id=tenant.settings.contract_id,
        asset=asset.name,
        asset_version=asset.version,
        image=asset.worker.normalized_image,
        state=info.state,
        resources=asset.resources.model_dump(mode="json", by_alias=True, exclude_none=True),
        inputs=inputs,
        outputs=outputs,
        outputs_missing=sealed.missing,
        created_at=info.created_at,
        started_at=info.started_at,
        finished_at=info.finished_at,
    )
    await tenant.storage.write_json(key, receipt.model_dump(mode="json"))
    return receipt


@router.get("/{job}/receipt", response_model=Receipt, summary="The job's receipt (finished jobs)")
async def job_receipt(job: JobPath, tenant: TenantDep) -> Receipt:
    wf = await _workflow(tenant, job)
    if not job_state(wf).finished:
        raise ApiError(409, "Conflict", f"job {job} has not finished yet")
    return await _receipt(tenant, wf, await _job_asset(tenant, wf))
