"""How a job looks to its consumer: the Workflow presented as a Job, its asset, and its settled state."""

from __future__ import annotations

import json

from api.core import workflow as m
from api.core.errors import ArgoNotFound, HTTPProblem, StorageUnavailable, not_found
from api.core.schemas import Job, StepInfo
from api.core.states import JobState, job_state
from api.services.tenant import TenantContext
from api.settings import ApiSettings
from templates import OutputKind, WorkflowAsset
from templates.jobs import JOB_ID
from templates.labels import (
    ANNOTATION_ASSET_NAME,
    ANNOTATION_CUTS,
    LABEL_ASSET,
    LABEL_FINISH,
    LABEL_MANAGED_BY,
    MANAGER,
    FinishMark,
)


def ui_url(settings: ApiSettings, name: str) -> str | None:
    """The job's page in the Argo UI (its route ``/workflows/:namespace/:name``), when a UI is configured."""
    base = settings.argo_ui_url
    return f"{base.rstrip('/')}/workflows/{settings.namespace}/{name}" if base else None


def job_view(tenant: TenantContext, wf: m.Workflow) -> Job:
    meta = wf.metadata
    st = wf.status
    nodes = (st.nodes if st else None) or {}
    steps = [
        StepInfo(
            name=n.display_name or n.name or node_id,
            type=n.type,
            phase=n.phase,
            started_at=n.started_at,
            finished_at=n.finished_at,
            message=n.message,
            pod=node_id if n.type == "Pod" else None,
        )
        for node_id, n in sorted(nodes.items(), key=lambda kv: str(kv[1].started_at or ""))
    ]
    name = meta.name or ""
    return Job(
        id=name,
        asset=asset_name(wf),
        state=job_state(wf),
        argo_phase=st.phase if st else None,
        message=st.message if st else None,
        created_at=meta.creation_timestamp,
        started_at=st.started_at if st else None,
        finished_at=st.finished_at if st else None,
        steps=steps,
        ui_url=ui_url(tenant.settings, name),
        cuts=cuts_of(wf),
    )


def cuts_of(wf: m.Workflow) -> dict[str, str]:
    """The limits a settled job hit (the finishing loop's annotation; anything unreadable there says nothing)."""
    raw = (wf.metadata.annotations or {}).get(ANNOTATION_CUTS)
    try:
        cuts = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in cuts.items()} if isinstance(cuts, dict) else {}


def finish_settled(wf: m.Workflow) -> bool:
    """Whether the API has settled the job's end (logs stored, outputs sealed, cuts noted)."""
    return (wf.metadata.labels or {}).get(LABEL_FINISH) == str(FinishMark.DONE)


async def settled(tenant: TenantContext, wf: m.Workflow, job: Job | None = None, strict: bool = False) -> Job:
    """The job as Argo reports it, except that a run whose required outputs are missing did not complete: the
    outputs are checked when they are sealed (Argo collects the output directory, not each output). ``strict``: S3
    being away raises instead of leaving Argo's word standing (for what is said once, like a webhook event)."""
    job = job or job_view(tenant, wf)
    if job.state is not JobState.COMPLETE:
        return job
    name = (wf.metadata.annotations or {}).get(ANNOTATION_ASSET_NAME)
    asset = await tenant.catalogue.get(name) if name else None
    if asset is None or not any(o.required for o in asset.outputs):
        return job
    try:
        missing = (await tenant.sealing.seal(tenant.storage, asset, job.id, wf.metadata.uid or "")).required_missing(
            asset
        )
    except StorageUnavailable:
        if strict:
            raise
        return job  # S3 briefly away: Argo's word stands until the outputs can be sealed
    if missing:
        return job.model_copy(
            update={"state": JobState.EXECUTOR_ERROR, "message": f"required outputs missing: {', '.join(missing)}"}
        )
    return job


async def leftover_job(tenant: TenantContext, job: str) -> bool:
    """Whether ``job`` (a well-formed id with no Workflow) still has keys of its own."""
    if not JOB_ID.match(job):
        return False
    keys = tenant.storage.keys
    return bool(await tenant.storage.list_prefix(keys.job(job) + "/")) or bool(
        await tenant.storage.list_prefix(keys.executor(job) + "/")
    )


async def workflow_of(tenant: TenantContext, job: str) -> m.Workflow:
    if not JOB_ID.match(job):
        raise not_found(f"job {job!r}")
    try:
        wf = await tenant.argo.get(job)
    except ArgoNotFound:
        raise not_found(f"job {job!r}") from None
    if (wf.metadata.labels or {}).get(LABEL_MANAGED_BY) != MANAGER:
        raise not_found(f"job {job!r}")
    tenant.require(asset_name(wf))
    return wf


def asset_name(wf: m.Workflow) -> str:
    """The name of the asset a job ran (the annotation keeps the name; the label holds it as a DNS label)."""
    meta = wf.metadata
    return (meta.annotations or {}).get(ANNOTATION_ASSET_NAME, (meta.labels or {}).get(LABEL_ASSET, ""))


def output_key(tenant: TenantContext, asset: WorkflowAsset, job: str, name: str) -> str:
    out = asset.output(name)
    return tenant.storage.keys.job_output(job, name, directory=out.kind is OutputKind.DIRECTORY)


async def job_asset(tenant: TenantContext, wf: m.Workflow) -> WorkflowAsset:
    name = (wf.metadata.annotations or {}).get(ANNOTATION_ASSET_NAME)
    asset = await tenant.catalogue.get(name) if name else None
    if asset is None:
        raise HTTPProblem(410, "Gone", "the job's asset is no longer contracted")
    return asset
