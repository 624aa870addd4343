"""What counts against a tenant's storage quota, by what holds it: staged inputs per asset, each job's keys (its
snapshot, outputs, records and log, and the executor's archive), and the rest (settings). Read from one listing of
the tenant's prefix, the same one the quota check counts."""

from __future__ import annotations

from api.core.schemas import JobBytes, StagedBytes, StorageUsage
from api.services.tenant import TenantContext


async def storage_usage(tenant: TenantContext) -> StorageUsage:
    prefix = tenant.storage.keys.prefix + "/"
    entries, live = await tenant.storage.list_prefix(prefix), await tenant.kube.job_names()
    staged: dict[str, int] = {}
    jobs: dict[str, int] = {}
    other = 0
    for entry in entries:
        parts = entry["key"][len(prefix) :].split("/")
        if len(parts) > 2 and parts[0] == "staging":
            staged[parts[1]] = staged.get(parts[1], 0) + entry["size"]
        elif len(parts) > 2 and parts[0] in ("jobs", "exec"):
            jobs[parts[1]] = jobs.get(parts[1], 0) + entry["size"]
        else:
            other += entry["size"]
    used = sum(staged.values()) + sum(jobs.values()) + other
    quota = tenant.settings.quota_storage_bytes
    return StorageUsage(
        quota_bytes=quota,
        used_bytes=used,
        free_bytes=max(0, quota - used),
        staged=[StagedBytes(asset=a, bytes=n) for a, n in sorted(staged.items()) if tenant.allows(a)],
        jobs=[JobBytes(job=j, bytes=n, has_job=j in live) for j, n in sorted(jobs.items())],
        other_bytes=other,
    )
