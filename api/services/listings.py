"""What the tenant has in S3 as a whole: its jobs (by their objects) and the bytes it uses against its quota."""

from __future__ import annotations

from api.backends.s3 import ObjectStore


async def job_ids(store: ObjectStore) -> list[str]:
    """Every job that has objects under ``jobs/`` (one delimited listing)."""
    entries = await store.blocking(store.entries, store.keys.job(""))
    return sorted(str(e.object_name).rstrip("/").rsplit("/", 1)[-1] for e in entries if e.object_name)


async def used_bytes(store: ObjectStore) -> int:
    """Every byte stored under the tenant's prefix (the storage quota counts them all)."""
    return sum(e["size"] for e in await store.list_prefix(store.keys.prefix))
