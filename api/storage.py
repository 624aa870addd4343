"""The tenant's objects in S3, through MinIO's Python SDK: staged inputs, job snapshots, outputs, logs, receipts.

Uploads and downloads stream in bounded chunks, so memory does not grow with file size. An upload
becomes visible only when its multipart upload completes and its metadata record is written; a reader
treats data without a record as not there.

Why MinIO's SDK and not s3fs/botocore: it speaks the same S3 API (any S3 store, not only MinIO) in a few MiB,
where botocore's service models held some 30 MiB in every idle tenant API pod. Its calls block, so they run in
worker threads; the multipart calls used here (create, upload part, complete, abort) are the SDK's own
``put_object`` building blocks, pinned by the lock file.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import os
import posixpath
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import anyio
import certifi
import urllib3
from anyio import to_thread
from minio import Minio
from minio.commonconfig import CopySource
from minio.datatypes import Object, Part
from minio.deleteobjects import DeleteObject
from minio.error import S3Error

from templates.keys import KeyLayout
from templates.names import check_safe_name

CHUNK = 8 * 1024 * 1024  # ranged reads
PART = 5 * 1024 * 1024  # multipart upload parts: S3's minimum, to keep upload memory small
PARTS_IN_FLIGHT = 2  # parts uploading at once per upload; memory is about (this + 1) parts
MAX_PARTS = 10_000  # S3's limit per multipart upload; parts grow past PART for inputs capped above ~48 GiB
META_DIR = ".meta"  # input names never start with '.', so this cannot collide with one
ABSENT = frozenset({"NoSuchKey", "NoSuchUpload"})  # S3 error codes that mean "not there" (the bucket must be)


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


def _absent(exc: S3Error) -> FileNotFoundError | S3Error:
    return FileNotFoundError(exc.object_name or "") if exc.code in ABSENT else exc


def part_size(limit: int) -> int:
    """Parts of an upload of at most ``limit`` bytes: S3's minimum, grown so that S3's 10,000 parts hold it."""
    return max(PART, -(-limit // MAX_PARTS))


class _Multipart:
    """One object written as a multipart upload: S3's create, part, complete and abort (blocking calls)."""

    def __init__(self, client: Minio, bucket: str, key: str) -> None:
        self.client, self.bucket, self.key = client, bucket, key
        self.upload_id: str | None = None

    def create(self) -> str:
        self.upload_id = self.client._create_multipart_upload(self.bucket, self.key, {})
        return self.upload_id

    def part(self, number: int, body: bytes) -> Part:
        assert self.upload_id is not None
        return Part(number, self.client._upload_part(self.bucket, self.key, body, None, self.upload_id, number))

    def complete(self, parts: list[Part]) -> None:
        assert self.upload_id is not None
        done = self.client._complete_multipart_upload(
            self.bucket, self.key, self.upload_id, sorted(parts, key=lambda p: p.part_number)
        )
        # S3 may answer 200 and put its error in the body (once it has started its keep-alive): no ETag, no object.
        if not done.etag:
            raise StorageUnavailable("S3 did not complete the multipart upload")

    def abort(self) -> None:
        if self.upload_id is not None:
            self.client._abort_multipart_upload(self.bucket, self.key, self.upload_id)


class ObjectWriter:
    """A blocking, write-only file that streams into one S3 object, a part at a time: visible only once closed
    without an error (an error aborts the upload). For work already in a worker thread (sealing outputs)."""

    def __init__(self, client: Minio, bucket: str, key: str, limit: int = 0) -> None:
        self._upload = _Multipart(client, bucket, key)
        self._part_size = part_size(limit)
        self._held: list[bytes] = []
        self._held_size = 0
        self._parts: list[Part] = []

    def write(self, data: bytes | memoryview) -> int:
        chunk = bytes(data)
        self._held.append(chunk)
        self._held_size += len(chunk)
        if self._held_size >= self._part_size:
            if self._upload.upload_id is None:
                self._upload.create()
            self._parts.append(self._upload.part(len(self._parts) + 1, b"".join(self._held)))
            self._held, self._held_size = [], 0
        return len(chunk)

    def flush(self) -> None:
        """Parts go out as they fill; the rest when the writer is finished."""

    def finish(self) -> None:
        body = b"".join(self._held)
        self._held = []
        if self._upload.upload_id is None:
            up = self._upload
            up.client.put_object(up.bucket, up.key, io.BytesIO(body), len(body))
            return
        if body:
            self._parts.append(self._upload.part(len(self._parts) + 1, body))
        self._upload.complete(self._parts)

    def abort(self) -> None:
        self._held = []
        with contextlib.suppress(Exception):  # best effort; the upload never completed either way
            self._upload.abort()


class Storage:
    """S3 access for one tenant."""

    def __init__(self, client: Minio, bucket: str, keys: KeyLayout) -> None:
        self.client = client
        self.bucket = bucket
        self.keys = keys

    async def blocking(self, fn: Any, *args: Any) -> Any:
        """Run blocking S3 work (e.g. streaming an archive) in a worker thread, faults as StorageUnavailable."""
        return await self._run(fn, *args)

    async def _run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a blocking SDK call in a worker thread, turning transport faults into StorageUnavailable."""
        try:
            return await to_thread.run_sync(lambda: fn(*args, **kwargs))
        except (FileNotFoundError, TooLarge, UnicodeDecodeError):
            raise
        except S3Error as exc:
            if exc.code in ABSENT:
                raise FileNotFoundError(exc.object_name or "") from None
            raise StorageUnavailable(f"S3 is unavailable: {exc.code}") from exc
        except Exception as exc:
            raise StorageUnavailable(f"S3 is unavailable: {type(exc).__name__}") from exc

    # --- blocking primitives (worker threads only) ---------------------------------------------------

    def get_bytes(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        """Bytes [start, end) of ``key`` (all of it without ``end``)."""
        if end is not None and end <= start:
            return b""
        try:
            response = self.client.get_object(self.bucket, key, offset=start, length=0 if end is None else end - start)
        except S3Error as exc:
            raise _absent(exc) from None
        try:
            # The bytes as stored: a Content-Encoding someone with write access set must not change them.
            return bytes(response.read(decode_content=False))
        finally:
            response.close()
            response.release_conn()

    def put_bytes(self, key: str, data: bytes) -> None:
        self.client.put_object(self.bucket, key, io.BytesIO(data), len(data))

    @contextlib.contextmanager
    def reader(self, key: str) -> Iterator[Any]:
        """A blocking, streaming file of ``key`` (FileNotFoundError when there is none)."""
        try:
            response = self.client.get_object(self.bucket, key)
        except S3Error as exc:
            raise _absent(exc) from None
        response.decode_content = False  # the bytes as stored (as in get_bytes)
        try:
            yield response
        finally:
            response.close()
            response.release_conn()

    @contextlib.contextmanager
    def writer(self, key: str, limit: int) -> Iterator[ObjectWriter]:
        """A blocking file streaming into ``key`` (at most ``limit`` bytes): stored when the block ends, aborted
        when it raises or the store refuses the end."""
        target = ObjectWriter(self.client, self.bucket, key, limit)
        try:
            yield target
            target.finish()
        except BaseException:
            target.abort()
            raise

    def tree(self, prefix: str) -> list[Object]:
        """The object named ``prefix``, when there is one, and every object below ``prefix/`` (a key names either)."""
        below = list(self.client.list_objects(self.bucket, prefix=prefix.rstrip("/") + "/", recursive=True))
        try:
            named = self.client.stat_object(self.bucket, prefix)
        except S3Error as exc:
            if exc.code in ABSENT:
                return below
            raise
        return [named, *below]

    def entries(self, folder: str) -> list[Object]:
        """The direct entries below ``folder/``: objects, and folders (``is_dir``)."""
        return list(self.client.list_objects(self.bucket, prefix=folder.rstrip("/") + "/"))

    def remove_tree(self, key: str) -> None:
        """The object ``key`` and every object below ``key/`` (absent ones are no error)."""
        names = [key, *(o.object_name for o in self.tree(key) if o.object_name and o.object_name != key)]
        for start in range(0, len(names), 1000):  # S3's limit per DeleteObjects request
            batch = (DeleteObject(name) for name in names[start : start + 1000])
            errors = list(self.client.remove_objects(self.bucket, batch))
            if errors:
                raise StorageUnavailable(f"S3 did not delete {len(errors)} objects: {errors[0].code}")

    # --- writing -----------------------------------------------------------------------------------

    async def write_stream(self, key: str, chunks: AsyncIterator[bytes], limit: int) -> tuple[int, str]:
        """Stream ``chunks`` into ``key``; abort (nothing stored) past ``limit`` bytes. Returns size, sha256.

        Parts go to S3 while the next ones are received, up to PARTS_IN_FLIGHT at once, so memory stays bounded
        by a few parts whatever the size. A body smaller than one part is a single PUT."""
        digest = hashlib.sha256()
        size = 0
        held: list[bytes] = []  # received, not yet sent: joined once per part (no growing buffer to copy)
        held_size = 0
        size_of_part = part_size(limit)
        upload = _Multipart(self.client, self.bucket, key)
        creating: asyncio.Future[Any] | None = None
        parts: list[Part] = []
        in_flight: set[asyncio.Future[None]] = set()
        number = 0

        async def send(number: int, body: bytes) -> None:
            parts.append(await self._write(upload.part, number, body))

        async def start_part(body: bytes) -> None:
            nonlocal in_flight, creating, number
            if upload.upload_id is None:
                creating = asyncio.ensure_future(self._write(upload.create))
                await asyncio.shield(creating)
            while len(in_flight) >= PARTS_IN_FLIGHT:
                done, in_flight = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                failures = [f.exception() for f in done]  # retrieve every one, raise the first
                for failure in failures:
                    if failure is not None:
                        raise failure
            number += 1
            in_flight.add(asyncio.ensure_future(send(number, body)))

        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise TooLarge(limit)
                digest.update(chunk)
                held.append(chunk)
                held_size += len(chunk)
                if held_size >= size_of_part:
                    await start_part(b"".join(held))
                    held, held_size = [], 0
            if upload.upload_id is None and creating is None:
                await self._write(self.put_bytes, key, b"".join(held))
            else:
                if held:
                    await start_part(b"".join(held))
                for finished in await asyncio.gather(*in_flight, return_exceptions=True):
                    if isinstance(finished, BaseException):
                        raise finished
                in_flight = set()
                await self._write(upload.complete, parts)
        except BaseException:
            # Abort the multipart upload: a partial object never becomes visible.
            with anyio.CancelScope(shield=True):
                for pending in in_flight:
                    pending.cancel()
                await asyncio.gather(*in_flight, return_exceptions=True)
                if creating is not None:  # perhaps cancelled while S3 was creating it
                    with contextlib.suppress(BaseException):
                        await creating
                if upload.upload_id is not None:
                    with contextlib.suppress(Exception):  # best effort; the upload never completed either way
                        await self._write(upload.abort)
            raise
        return size, digest.hexdigest()

    async def _write(self, fn: Any, *args: Any) -> Any:
        """A write: even "not found" (bucket, upload) is a fault of S3 here."""
        try:
            return await self._run(fn, *args)
        except FileNotFoundError as exc:
            raise StorageUnavailable(f"S3 is unavailable: {type(exc).__name__}") from exc

    async def write_json(self, key: str, value: Any) -> None:
        await self._run(self.put_bytes, key, json.dumps(value, sort_keys=True).encode())

    async def read_json(self, key: str) -> Any | None:
        try:
            return json.loads(await self._run(self.get_bytes, key))
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
        entries = await self._run(self.entries, f"{self.keys.staging(asset)}/{META_DIR}")
        found = []
        for entry in sorted(e.object_name for e in entries if e.object_name and not e.is_dir):
            meta = await self.read_json(entry)
            if meta:
                found.append(StoredObject(meta["name"], meta["size"], meta["sha256"], meta.get("uploaded_at")))
        return found

    async def staged_input(self, asset: str, name: str) -> dict[str, Any] | None:
        return await self.read_json(self._staged_meta(asset, name))

    async def read_staged_text(self, asset: str, name: str, limit: int) -> str:
        key = self.keys.staging(asset, name)
        # Ask the size first: an object staged before a cap was lowered is never pulled into memory whole.
        if await self.size(key) > limit:
            raise TooLarge(limit)
        data: bytes = await self._run(self.get_bytes, key)
        if len(data) > limit:
            raise TooLarge(limit)
        return data.decode("utf-8", errors="strict")

    async def delete_staged(self, asset: str, name: str) -> bool:
        if await self.staged_input(asset, name) is None:
            return False
        # Record first: from this moment the input counts as absent, even if data removal is interrupted.
        await self.delete_key(self._staged_meta(asset, name))
        await self._run(self.remove_tree, self.keys.staging(asset, name))
        return True

    async def snapshot_input(self, asset: str, name: str, job: str, meta: dict[str, Any] | None) -> None:
        """Copy a staged input into the job's own keys (server-side), so later uploads never change it."""
        src = self.keys.staging(asset, name)
        dst = self.keys.job_input(job, name)
        if meta and "files" in meta:
            # A job id reused (an Idempotency-Key after its Workflow expired) must not keep an old run's files.
            await self._run(self.remove_tree, dst)
            for rel in sorted(meta["files"]):
                await self._run(self._copy, f"{src}/{rel}", f"{dst}/{rel}")
        else:
            await self._run(self._copy, src, dst)

    def _copy(self, src: str, dst: str) -> None:
        # The SDK copies objects over 5 GiB part by part itself.
        self.client.copy_object(self.bucket, dst, CopySource(self.bucket, src))

    # --- outputs, logs, receipts -------------------------------------------------------------------

    async def list_prefix(self, prefix: str) -> list[dict[str, Any]]:
        entries = await self._run(self.tree, prefix)
        return sorted(({"key": e.object_name, "size": int(e.size or 0)} for e in entries), key=lambda e: e["key"])

    async def job_ids(self) -> list[str]:
        """Every job that has objects under ``jobs/`` (one delimited listing)."""
        entries = await self._run(self.entries, self.keys.job(""))
        return sorted(str(e.object_name).rstrip("/").rsplit("/", 1)[-1] for e in entries if e.object_name)

    async def newest(self, prefix: str) -> datetime | None:
        """When the newest object under ``prefix`` was written (None: there is none)."""
        entries = await self._run(self.tree, prefix)
        return max((e.last_modified for e in entries if isinstance(e.last_modified, datetime)), default=None)

    async def size(self, key: str) -> int:
        return int((await self._run(self.client.stat_object, self.bucket, key)).size or 0)

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
                current = upcoming or asyncio.ensure_future(self._run(self.get_bytes, key, lo, hi))
                upcoming = None
                if i + 1 < len(ranges):
                    nlo, nhi = ranges[i + 1]
                    upcoming = asyncio.ensure_future(self._run(self.get_bytes, key, nlo, nhi))
                yield await current
        finally:
            if upcoming is not None:
                upcoming.cancel()

    async def delete_prefix(self, prefix: str) -> None:
        await self._run(self.remove_tree, prefix.rstrip("/"))

    async def delete_key(self, key: str) -> None:
        await self._run(self.client.remove_object, self.bucket, key)  # S3 deletes are no error when absent

    async def used_bytes(self) -> int:
        return sum(e["size"] for e in await self.list_prefix(self.keys.prefix))

    async def ping(self) -> None:
        # A tenant's credentials may list only its own prefix, not the bucket; its first page of folders is enough.
        def first() -> None:
            next(iter(self.client.list_objects(self.bucket, prefix=self.keys.prefix.rstrip("/") + "/")), None)

        await self._run(first)


def _now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="seconds")


def _tree_digest(files: dict[str, dict[str, Any]]) -> str:
    lines = "".join(f"{files[p]['sha256']}  {p}\n" for p in sorted(files))
    return hashlib.sha256(lines.encode()).hexdigest()


def make_client(endpoint_url: str, access_key: str, secret_key: str, region: str | None) -> Minio:
    """The SDK client of one S3 endpoint: short timeouts and two tries, so a fault of S3 becomes a 503 quickly."""
    url = urlsplit(endpoint_url)
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=5, read=60),
        maxsize=16,  # concurrent requests of one API process (parts in flight, ranged reads, listings)
        cert_reqs="CERT_REQUIRED",
        ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
        # MinIO asks for Retry-After: 120 when slow or short of quorum: that wait is the consumer's to make, after
        # our 503, not a worker thread's.
        retries=urllib3.Retry(
            total=2, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504], respect_retry_after_header=False
        ),
    )
    return Minio(
        url.netloc,
        access_key=access_key,
        secret_key=secret_key,
        secure=url.scheme == "https",
        region=region or "us-east-1",  # a region set means no GetBucketLocation call
        http_client=http,
    )


def basename(key: str) -> str:
    return posixpath.basename(key)
