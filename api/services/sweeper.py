"""Leftovers of job starts that never became a Workflow: the API's part of the storage safety net.

A start copies the job's input snapshots (and its webhook record, its env Secret) before it asks Argo for the
Workflow; when that create fails for good (Argo down past the client's retries, the API pod killed midway) those
objects belong to no job. A job counts as such a leftover only when all of these hold: Argo has no Workflow of
that name, the job has none of what a job that ran leaves (its seal record, its receipt, anything Argo's executor
wrote under ``exec/``), and its newest object is older than ``orphan_grace_seconds`` (a start in flight is never
swept). Each API replica sweeps; the deletes are idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta

from api.core.errors import ArgoNotFound, KubeRejected, KubeUnavailable
from api.services import listings, loops
from api.services.tenant import TenantContext
from templates.jobs import env_secret_name

log = logging.getLogger(__name__)


async def leftover(tenant: TenantContext, job: str, now: datetime) -> bool:
    keys, storage = tenant.storage.keys, tenant.storage
    try:
        await tenant.argo.get(job)
        return False
    except ArgoNotFound:
        pass
    ran = await asyncio.gather(
        storage.newest(keys.executor(job)),
        storage.newest(keys.job_seal(job)),
        storage.newest(keys.job_receipt(job)),
    )
    if any(ran):
        return False
    newest = await storage.newest(keys.job(job))
    grace = timedelta(seconds=tenant.settings.orphan_grace_seconds)
    return newest is not None and newest < now - grace


async def sweep_once(tenant: TenantContext, now: datetime | None = None) -> list[str]:
    """Remove the leftovers of failed starts; returns their job ids."""
    now = now or datetime.now(UTC)
    removed = []
    for job in await listings.job_ids(tenant.storage):
        if not await leftover(tenant, job, now):
            continue
        await tenant.job_keys.revoke_quietly(job)  # its own S3 keys and their Secret, if the start minted any
        await tenant.storage.delete_prefix(tenant.storage.keys.job(job))
        with contextlib.suppress(KubeUnavailable, KubeRejected):
            await tenant.kube.delete_secret(env_secret_name(job))
        log.info("removed the leftovers of a job start that never ran", extra={"job": job})
        removed.append(job)
    return removed


async def sweep_forever(tenant: TenantContext) -> None:
    await loops.forever(
        lambda: sweep_once(tenant), lambda: tenant.settings.orphan_sweep_interval_seconds, "orphan sweep"
    )
