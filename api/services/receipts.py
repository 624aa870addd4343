"""A finished job's receipt: what ran, on what inputs, producing which outputs, when."""

from __future__ import annotations

import hashlib
import json

from api.core import workflow as m
from api.core.schemas import Receipt
from api.services.jobviews import finish_settled, job_view, settled
from api.services.tenant import TenantContext
from templates import InputKind, WorkflowAsset
from templates.labels import ANNOTATION_ENV_DIGESTS, ANNOTATION_INPUT_DIGESTS


def _env_digests(annotation: str | None) -> dict[str, str]:
    """{env input: sha256} from the job's annotation; nothing for a missing or mangled one."""
    try:
        value = json.loads(annotation) if annotation else {}
    except ValueError:
        return {}
    return {k: v for k, v in value.items() if isinstance(v, str)} if isinstance(value, dict) else {}


async def receipt_of(tenant: TenantContext, wf: m.Workflow, asset: WorkflowAsset) -> Receipt:
    job = wf.metadata.name or ""
    key = tenant.storage.keys.job_receipt(job)
    cached = await tenant.storage.read_json(key)
    run = wf.metadata.uid or ""
    if cached and cached.get("run", "") == run:  # a job id reused after its Workflow expired is a new run
        return Receipt.model_validate(cached)
    info = job_view(tenant, wf)
    annotations = wf.metadata.annotations or {}
    annotated = annotations.get(ANNOTATION_ENV_DIGESTS)
    # What the consumer uploaded, as the upload answered it: the same digest for every job that used it.
    inputs = {**_env_digests(annotations.get(ANNOTATION_INPUT_DIGESTS)), **_env_digests(annotated)}
    for item in asset.inputs:
        if item.name in inputs:
            continue
        if item.kind is InputKind.ENV:
            if annotated is None:  # jobs started by earlier releases kept the digest as an object
                record = await tenant.storage.read_json(tenant.storage.keys.job_input_digest(job, item.name))
                if record:
                    inputs[item.name] = record["sha256"]
            continue
        # Jobs started by earlier releases: a digest over the job's own snapshot (it names the job's keys).
        entries = await tenant.storage.list_prefix(tenant.storage.keys.job_input(job, item.name))
        if entries:
            digests = [f"{await tenant.storage.sha256(e['key'])}  {e['key']}" for e in entries]
            inputs[item.name] = hashlib.sha256("\n".join(digests).encode()).hexdigest()
    sealed = await tenant.sealing.seal(tenant.storage, asset, job, wf.metadata.uid or "")
    outputs = {name: str(record["sha256"]) for name, record in sealed.outputs.items()}
    info = await settled(tenant, wf, info)
    receipt = Receipt(
        job=job,
        run=run,
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
        cuts=info.cuts,
        created_at=info.created_at,
        started_at=info.started_at,
        finished_at=info.finished_at,
    )
    if finish_settled(wf):  # until then the cuts it hit may be unknown: kept once they are
        await tenant.storage.write_json(key, receipt.model_dump(mode="json"))
    return receipt
