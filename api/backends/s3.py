"""The S3 transport of the consumer API, through MinIO's Python SDK: one tenant's objects — get, put, stream,
list, delete — and streamed writes (:mod:`api.backends.s3upload`).

Reads stream in bounded ranged chunks, so memory does not grow with file size. Blocking SDK calls run in worker
threads; transport faults become :class:`~api.core.errors.StorageUnavailable` (a 503) and "no such key"
``FileNotFoundError``.

Why MinIO's SDK and not s3fs/botocore: it speaks the same S3 API (any S3 store, not only MinIO) in a few MiB,
where botocore's service models held some 30 MiB in every idle tenant API pod. Only its public, documented calls
are used.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import os
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import anyio
import certifi
import urllib3
from anyio import to_thread
from minio import Minio
from minio.commonconfig import CopySource
from minio.datatypes import Object
from minio.deleteobjects import DeleteObject
from minio.error import S3Error

from api.backends.s3upload import ObjectWriter, write_stream
from api.core.errors import StorageUnavailable, TooLarge
from templates.keys import KeyLayout

CHUNK = 8 * 1024 * 1024  # ranged reads
UPLOADS_AT_ONCE = 64  # streamed uploads of one process, each holding a worker thread for its whole length
ABSENT = frozenset({"NoSuchKey", "NoSuchUpload"})  # S3 error codes that mean "not there" (the bucket must be)


def _absent(exc: S3Error) -> FileNotFoundError | S3Error:
    return FileNotFoundError(exc.object_name or "") if exc.code in ABSENT else exc


class ObjectStore:
    """One tenant's objects in S3 (``keys``: the tenant's key layout)."""

    def __init__(self, client: Minio, bucket: str, keys: KeyLayout, public: Minio | None = None) -> None:
        self.client = client
        self.bucket = bucket
        self.keys = keys
        self.public = public  # the same store at the address consumers reach: presigned URLs are made for it
        # A streamed upload holds its thread from the first byte to the last: a limiter of their own, so that they
        # never take the threads every other S3 call runs in (anyio's default limiter).
        self._uploads = anyio.CapacityLimiter(UPLOADS_AT_ONCE)

    async def blocking(self, fn: Any, *args: Any) -> Any:
        """Run blocking S3 work (e.g. streaming an archive) in a worker thread, faults as StorageUnavailable."""
        return await self._run(fn, *args)

    async def heavy(self, fn: Any, *args: Any) -> Any:
        """As :meth:`blocking`, for long work a consumer can cause (decompressing an upload to check it): on the
        uploads' own threads, so that it never starves the short S3 calls of every other request."""
        return await self._run(fn, *args, limiter=self._uploads)

    async def _run(self, fn: Any, *args: Any, limiter: anyio.CapacityLimiter | None = None) -> Any:
        """Run a blocking SDK call in a worker thread, turning transport faults into StorageUnavailable."""
        try:
            return await to_thread.run_sync(lambda: fn(*args), limiter=limiter)
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
        """Stream ``chunks`` into ``key``; abort (nothing stored) past ``limit`` bytes. Returns size, sha256."""
        return await write_stream(self.client, self.bucket, key, chunks, limit, self._upload)

    async def _upload(self, fn: Any, *args: Any) -> Any:
        """A streamed upload's blocking half, on a thread of the uploads' own (a write: "not found" is a fault)."""
        try:
            return await self._run(fn, *args, limiter=self._uploads)
        except FileNotFoundError as exc:
            raise StorageUnavailable(f"S3 is unavailable: {type(exc).__name__}") from exc

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

    async def copy(self, src: str, dst: str) -> None:
        """Copy ``src`` to ``dst`` inside S3 (the SDK copies objects over 5 GiB part by part itself)."""
        await self._run(self.client.copy_object, self.bucket, dst, CopySource(self.bucket, src))

    # --- reading -----------------------------------------------------------------------------------

    async def list_prefix(self, prefix: str) -> list[dict[str, Any]]:
        entries = await self._run(self.tree, prefix)
        return sorted(({"key": e.object_name, "size": int(e.size or 0)} for e in entries), key=lambda e: e["key"])

    async def newest(self, prefix: str) -> datetime | None:
        """When the newest object under ``prefix`` was written (None: there is none)."""
        entries = await self._run(self.tree, prefix)
        return max((e.last_modified for e in entries if isinstance(e.last_modified, datetime)), default=None)

    async def exists(self, key: str) -> bool:
        try:
            await self.size(key)
        except FileNotFoundError:
            return False
        return True

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

    def presigned(self, key: str, seconds: int, filename: str) -> str | None:
        """A GET URL for ``key`` alone, valid ``seconds``, at the consumers' address (None: there is none). Made
        offline (a signature over the key and its expiry): it costs S3 nothing."""
        if self.public is None:
            return None
        return self.public.presigned_get_object(
            self.bucket,
            key,
            expires=timedelta(seconds=seconds),
            response_headers={"response-content-disposition": f'attachment; filename="{filename}"'},
        )

    async def ping(self) -> None:
        # A tenant's credentials may list only its own prefix, not the bucket; its first page of folders is enough.
        def first() -> None:
            next(iter(self.client.list_objects(self.bucket, prefix=self.keys.prefix.rstrip("/") + "/")), None)

        await self._run(first)


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
