"""Staged inputs: uploads waiting for a job, one record per input in S3 that makes it visible.

An upload becomes visible only when its data is stored and its record (``KeyLayout.staged_record``: size, sha256,
when; a directory input's files) is written; a reader treats data without a record as not there. A job start copies
the staged inputs into the job's own keys (:func:`snapshot_input`), so later uploads never change a job.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from api.backends.s3 import ObjectStore
from api.core.errors import TooLarge
from templates import Input, WorkflowAsset
from templates.asset import quantity
from templates.names import check_safe_name

ENV_BYTES_DEFAULT = 1024 * 1024  # an env input is read whole when a job starts


@dataclass(frozen=True)
class StoredObject:
    name: str
    size: int
    sha256: str | None
    uploaded_at: str | None = None


def check_relative_path(path: str) -> str:
    """A path inside a directory input: safe segments only."""
    parts = path.split("/")
    if not path or len(path) > 1024 or any(not p for p in parts):
        raise ValueError("relative path must be non-empty segments separated by '/'")
    for part in parts:
        check_safe_name(part)
    return path


def max_env_bytes(asset: WorkflowAsset, item: Input) -> int:
    """The cap of an env input: its own ``maxSize``, else the upload cap but at most 1 MiB."""
    return int(quantity(item.max_size)) if item.max_size else min(asset.upload_cap(item), ENV_BYTES_DEFAULT)


async def stage_input(
    store: ObjectStore,
    asset: str,
    name: str,
    chunks: AsyncIterator[bytes],
    limit: int,
    relpath: str | None = None,
    inspect: Callable[[str, int], Awaitable[None]] | None = None,
) -> StoredObject:
    """Store an upload; it becomes visible with its record. ``inspect(key, size)`` may refuse it first (raising):
    the object is then deleted and no record written."""
    key = store.keys.staging(asset, name)
    if relpath is not None:
        key = f"{key}/{check_relative_path(relpath)}"
    size, sha = await store.write_stream(key, chunks, limit)
    if inspect is not None:
        try:
            await inspect(key, size)
        except BaseException:
            await store.delete_key(key)
            raise
    record: dict[str, Any] = {"name": name, "size": size, "sha256": sha, "uploaded_at": _now()}
    if relpath is not None:
        meta = await store.read_json(store.keys.staged_record(asset, name)) or {"name": name, "files": {}}
        meta.setdefault("files", {})[relpath] = {"size": size, "sha256": sha}
        meta["size"] = sum(f["size"] for f in meta["files"].values())
        meta["sha256"] = _tree_digest(meta["files"])
        meta["uploaded_at"] = record["uploaded_at"]
        record = meta
    await store.write_json(store.keys.staged_record(asset, name), record)
    return StoredObject(name, record["size"], record["sha256"], record["uploaded_at"])


async def staged_inputs(store: ObjectStore, asset: str) -> list[StoredObject]:
    entries = await store.blocking(store.entries, store.keys.staged_records(asset))
    found = []
    for entry in sorted(e.object_name for e in entries if e.object_name and not e.is_dir):
        meta = await store.read_json(entry)
        if meta:
            found.append(StoredObject(meta["name"], meta["size"], meta["sha256"], meta.get("uploaded_at")))
    return found


async def staged_input(store: ObjectStore, asset: str, name: str) -> dict[str, Any] | None:
    record: dict[str, Any] | None = await store.read_json(store.keys.staged_record(asset, name))
    return record


async def read_staged_text(store: ObjectStore, asset: str, name: str, limit: int) -> str:
    key = store.keys.staging(asset, name)
    # Ask the size first: an object staged before a cap was lowered is never pulled into memory whole.
    if await store.size(key) > limit:
        raise TooLarge(limit)
    data: bytes = await store.blocking(store.get_bytes, key)
    if len(data) > limit:
        raise TooLarge(limit)
    return data.decode("utf-8", errors="strict")


async def delete_staged(store: ObjectStore, asset: str, name: str) -> bool:
    if await staged_input(store, asset, name) is None:
        return False
    # Record first: from this moment the input counts as absent, even if data removal is interrupted.
    await store.delete_key(store.keys.staged_record(asset, name))
    await store.delete_prefix(store.keys.staging(asset, name))
    return True


async def snapshot_input(store: ObjectStore, asset: str, name: str, job: str, meta: dict[str, Any] | None) -> None:
    """Copy a staged input into the job's own keys (server-side), so later uploads never change it."""
    src = store.keys.staging(asset, name)
    dst = store.keys.job_input(job, name)
    if meta and "files" in meta:
        # A job id reused (an Idempotency-Key after its Workflow expired) must not keep an old run's files.
        await store.delete_prefix(dst)
        for rel in sorted(meta["files"]):
            await store.copy(f"{src}/{rel}", f"{dst}/{rel}")
    else:
        await store.copy(src, dst)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _tree_digest(files: dict[str, dict[str, Any]]) -> str:
    lines = "".join(f"{files[p]['sha256']}  {p}\n" for p in sorted(files))
    return hashlib.sha256(lines.encode()).hexdigest()
