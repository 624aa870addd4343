"""The tenant's objects in S3, through s3fs: staged inputs, job snapshots, outputs, logs, receipts.

Uploads and downloads stream in bounded chunks, so memory does not grow with file size. An upload
becomes visible only when its multipart upload completes and its metadata record is written; a reader
treats data without a record as not there.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import posixpath
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import anyio
import s3fs
from anyio import to_thread

from templates.keys import KeyLayout
from templates.names import check_safe_name

CHUNK = 8 * 1024 * 1024  # ranged reads
PART = 5 * 1024 * 1024  # multipart upload parts: S3's minimum, to keep upload memory small
PARTS_IN_FLIGHT = 2  # parts uploading at once per upload; memory is about (this + 1) parts
MAX_PARTS = 10_000  # S3's limit per multipart upload; parts grow past PART for inputs capped above ~48 GiB
META_DIR = ".meta"  # input names never start with '.', so this cannot collide with one


class StorageUnavailable(RuntimeError):
    """S3 could not be reached or answered with a server fault."""


class TooLarge(ValueError):
    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"larger than the limit of {limit} bytes")


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


class Storage:
    """S3 access for one tenant."""

    def __init__(self, fs: s3fs.S3FileSystem, bucket: str, keys: KeyLayout) -> None:
        self.fs = fs
        self.bucket = bucket
        self.keys = keys

    def _path(self, key: str) -> str:
        return f"{self.bucket}/{key}"

    def path(self, key: str) -> str:
        """The s3fs path of ``key`` (for blocking work run through :meth:`blocking`)."""
        return self._path(key)

    async def blocking(self, fn: Any, *args: Any) -> Any:
        """Run blocking s3fs work (e.g. streaming an archive) in a worker thread, faults as StorageUnavailable."""
        return await self._run(fn, *args)

    async def _run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a blocking s3fs call in a worker thread, turning transport faults into StorageUnavailable."""
        try:
            return await to_thread.run_sync(lambda: fn(*args, **kwargs))
        except (FileNotFoundError, TooLarge, UnicodeDecodeError):
            raise
        except Exception as exc:
            raise StorageUnavailable(f"S3 is unavailable: {type(exc).__name__}") from exc

    # --- writing -----------------------------------------------------------------------------------

    async def _aio(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Await one of s3fs's coroutines on s3fs's own event loop (its sync mode keeps one in a thread):
        several can be in flight at once without a worker thread each."""
        try:
            return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.fs.loop))
        except Exception as exc:  # writes only: even "not found" (bucket, upload) is a fault of S3 here
            raise StorageUnavailable(f"S3 is unavailable: {type(exc).__name__}") from exc

    async def write_stream(self, key: str, chunks: AsyncIterator[bytes], limit: int) -> tuple[int, str]:
        """Stream ``chunks`` into ``key``; abort (nothing stored) past ``limit`` bytes. Returns size, sha256.

        Parts go to S3 while the next ones are received, up to PARTS_IN_FLIGHT at once (as s3fs's own
        ``put_file`` does), so memory stays bounded by a few parts whatever the size. A body smaller than
        one part is a single PUT."""
        digest = hashlib.sha256()
        size = 0
        held: list[bytes] = []  # received, not yet sent: joined once per part (no growing buffer to copy)
        held_size = 0
        part_size = max(PART, -(-limit // MAX_PARTS))  # S3 takes at most MAX_PARTS parts per upload
        upload_id: str | None = None
        creating: asyncio.Future[Any] | None = None
        parts: list[dict[str, Any]] = []
        in_flight: set[asyncio.Future[None]] = set()
        numbers = itertools.count(1)
        target = {"Bucket": self.bucket, "Key": key}

        async def send(number: int, body: bytes) -> None:
            answer = await self._aio(
                self.fs._call_s3("upload_part", **target, UploadId=upload_id, PartNumber=number, Body=body)
            )
            parts.append({"PartNumber": number, "ETag": answer["ETag"]})

        async def start_part(body: bytes) -> None:
            nonlocal upload_id, in_flight, creating
            if upload_id is None:
                creating = asyncio.ensure_future(self._aio(self.fs._call_s3("create_multipart_upload", **target)))
                upload_id = (await asyncio.shield(creating))["UploadId"]
            while len(in_flight) >= PARTS_IN_FLIGHT:
                done, in_flight = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                failures = [f.exception() for f in done]  # retrieve every one, raise the first
                for failure in failures:
                    if failure is not None:
                        raise failure
            in_flight.add(asyncio.ensure_future(send(next(numbers), body)))

        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise TooLarge(limit)
                digest.update(chunk)
                held.append(chunk)
                held_size += len(chunk)
                if held_size >= part_size:
                    await start_part(b"".join(held))
                    held, held_size = [], 0
            if upload_id is None:
                await self._aio(self.fs._call_s3("put_object", **target, Body=b"".join(held)))
            else:
                if held:
                    await start_part(b"".join(held))
                for finished in await asyncio.gather(*in_flight, return_exceptions=True):
                    if isinstance(finished, BaseException):
                        raise finished
                in_flight = set()
                done_parts = {"Parts": sorted(parts, key=lambda p: p["PartNumber"])}
                await self._aio(
                    self.fs._call_s3(
                        "complete_multipart_upload", **target, UploadId=upload_id, MultipartUpload=done_parts
                    )
                )
        except BaseException:
            # Abort the multipart upload: a partial object never becomes visible.
            with anyio.CancelScope(shield=True):
                for pending in in_flight:
                    pending.cancel()
                await asyncio.gather(*in_flight, return_exceptions=True)
                if upload_id is None and creating is not None:  # cancelled while S3 was creating it
                    with contextlib.suppress(BaseException):
                        upload_id = (await creating)["UploadId"]
                if upload_id is not None:
                    with contextlib.suppress(Exception):  # best effort; the upload never completed either way
                        await self._aio(self.fs._call_s3("abort_multipart_upload", **target, UploadId=upload_id))
            raise
        return size, digest.hexdigest()

    async def write_json(self, key: str, value: Any) -> None:
        await self._run(self.fs.pipe_file, self._path(key), json.dumps(value, sort_keys=True).encode())

    async def read_json(self, key: str) -> Any | None:
        try:
            return json.loads(await self._run(self.fs.cat_file, self._path(key)))
        except FileNotFoundError:
            return None

    # --- staged inputs -----------------------------------------------------------------------------

    def _staged_meta(self, asset: str, name: str) -> str:
        return f"{self.keys.staging(asset)}/{META_DIR}/{name}.json"

    async def stage_input(
        self, asset: str, name: str, chunks: AsyncIterator[bytes], limit: int, relpath: str | None = None
    ) -> StoredObject:
        key = self.keys.staging(asset, name)
        if relpath is not None:
            key = f"{key}/{check_relative_path(relpath)}"
        size, sha = await self.write_stream(key, chunks, limit)
        record: dict[str, Any] = {"name": name, "size": size, "sha256": sha, "uploaded_at": _now()}
        if relpath is not None:
            meta = await self.read_json(self._staged_meta(asset, name)) or {"name": name, "files": {}}
            meta.setdefault("files", {})[relpath] = {"size": size, "sha256": sha}
            meta["size"] = sum(f["size"] for f in meta["files"].values())
            meta["sha256"] = _tree_digest(meta["files"])
            meta["uploaded_at"] = record["uploaded_at"]
            record = meta
        await self.write_json(self._staged_meta(asset, name), record)
        return StoredObject(name, record["size"], record["sha256"], record["uploaded_at"])

    async def staged_inputs(self, asset: str) -> list[StoredObject]:
        prefix = f"{self.keys.staging(asset)}/{META_DIR}"
        try:
            entries = await self._run(self.fs.ls, self._path(prefix), detail=False, refresh=True)
        except FileNotFoundError:
            return []
        found = []
        for entry in sorted(entries):
            meta = await self.read_json(entry.removeprefix(f"{self.bucket}/"))
            if meta:
                found.append(StoredObject(meta["name"], meta["size"], meta["sha256"], meta.get("uploaded_at")))
        return found

    async def staged_input(self, asset: str, name: str) -> dict[str, Any] | None:
        return await self.read_json(self._staged_meta(asset, name))

    async def read_staged_text(self, asset: str, name: str, limit: int) -> str:
        path = self._path(self.keys.staging(asset, name))
        # Ask the size first: an object staged before a cap was lowered is never pulled into memory whole.
        if int((await self._run(self.fs.info, path)).get("size") or 0) > limit:
            raise TooLarge(limit)
        data: bytes = await self._run(self.fs.cat_file, path)
        if len(data) > limit:
            raise TooLarge(limit)
        return data.decode("utf-8", errors="strict")

    async def delete_staged(self, asset: str, name: str) -> bool:
        if await self.staged_input(asset, name) is None:
            return False
        # Record first: from this moment the input counts as absent, even if data removal is interrupted.
        await self._run(self.fs.rm, self._path(self._staged_meta(asset, name)))
        key = self._path(self.keys.staging(asset, name))
        if await self._run(self.fs.exists, key):
            await self._run(self.fs.rm, key, recursive=True)
        return True

    async def snapshot_input(self, asset: str, name: str, job: str, meta: dict[str, Any] | None) -> None:
        """Copy a staged input into the job's own keys (server-side), so later uploads never change it."""
        src = self._path(self.keys.staging(asset, name))
        dst = self._path(self.keys.job_input(job, name))
        if meta and "files" in meta:
            # A job id reused (an Idempotency-Key after its Workflow expired) must not keep an old run's files.
            with contextlib.suppress(FileNotFoundError):
                await self._run(self.fs.rm, dst, recursive=True)
            for rel in sorted(meta["files"]):
                await self._run(self.fs.copy, f"{src}/{rel}", f"{dst}/{rel}")
        else:
            await self._run(self.fs.copy, src, dst)

    # --- outputs, logs, receipts -------------------------------------------------------------------

    async def list_prefix(self, prefix: str) -> list[dict[str, Any]]:
        try:
            entries = await self._run(self.fs.find, self._path(prefix), detail=True, withdirs=False)
        except FileNotFoundError:
            return []
        return [
            {"key": k.removeprefix(f"{self.bucket}/"), "size": int(v.get("size") or 0)}
            for k, v in sorted(entries.items())
        ]

    async def job_ids(self) -> list[str]:
        """Every job that has objects under ``jobs/`` (one delimited listing)."""
        base = self._path(self.keys.job("")).rstrip("/")
        try:
            entries = await self._run(self.fs.ls, base, detail=False, refresh=True)
        except FileNotFoundError:
            return []
        return sorted(str(e).rstrip("/").rsplit("/", 1)[-1] for e in entries if str(e).rstrip("/") != base)

    async def newest(self, prefix: str) -> datetime | None:
        """When the newest object under ``prefix`` was written (None: there is none)."""
        try:
            entries = await self._run(self.fs.find, self._path(prefix), detail=True, withdirs=False)
        except FileNotFoundError:
            return None
        stamps = [v["LastModified"] for v in entries.values() if isinstance(v.get("LastModified"), datetime)]
        return max(stamps, default=None)

    async def size(self, key: str) -> int:
        info = await self._run(self.fs.info, self._path(key), refresh=True)
        if info.get("type") == "directory":
            raise FileNotFoundError(key)
        return int(info["size"])

    async def sha256(self, key: str) -> str:
        digest = hashlib.sha256()
        async for chunk in self.read_range(key, 0, None):
            digest.update(chunk)
        return digest.hexdigest()

    async def read_range(self, key: str, start: int, end: int | None) -> AsyncIterator[bytes]:
        """Yield bytes [start, end) of ``key`` in bounded ranged reads."""
        if end is None:
            end = await self.size(key)
        ranges = [(pos, min(end, pos + CHUNK)) for pos in range(start, end, CHUNK)]
        # The next range is fetched while the current one is sent: at most two chunks in memory.
        upcoming: asyncio.Task[bytes] | None = None
        try:
            for i, (lo, hi) in enumerate(ranges):
                current = upcoming or asyncio.ensure_future(
                    self._run(self.fs.cat_file, self._path(key), start=lo, end=hi)
                )
                upcoming = None
                if i + 1 < len(ranges):
                    nlo, nhi = ranges[i + 1]
                    upcoming = asyncio.ensure_future(self._run(self.fs.cat_file, self._path(key), start=nlo, end=nhi))
                yield await current
        finally:
            if upcoming is not None:
                upcoming.cancel()

    async def delete_prefix(self, prefix: str) -> None:
        path = self._path(prefix)
        if await self._run(self.fs.exists, path):
            await self._run(self.fs.rm, path, recursive=True)

    async def delete_key(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            await self._run(self.fs.rm_file, self._path(key))

    async def used_bytes(self) -> int:
        return sum(e["size"] for e in await self.list_prefix(self.keys.prefix))

    async def ping(self) -> None:
        # A tenant's credentials may list only its own prefix, not the bucket.
        with contextlib.suppress(FileNotFoundError):
            await self._run(self.fs.ls, self._path(self.keys.prefix), refresh=True)


def _now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="seconds")


def _tree_digest(files: dict[str, dict[str, Any]]) -> str:
    lines = "".join(f"{files[p]['sha256']}  {p}\n" for p in sorted(files))
    return hashlib.sha256(lines.encode()).hexdigest()


def make_filesystem(endpoint_url: str, access_key: str, secret_key: str, region: str | None) -> s3fs.S3FileSystem:
    return s3fs.S3FileSystem(
        key=access_key,
        secret=secret_key,
        endpoint_url=endpoint_url,
        client_kwargs={"region_name": region or "us-east-1"},
        config_kwargs={"retries": {"max_attempts": 2, "mode": "standard"}, "connect_timeout": 5, "read_timeout": 60},
        use_listings_cache=False,
        skip_instance_cache=True,
    )


def basename(key: str) -> str:
    return posixpath.basename(key)
