"""Streamed writes into one S3 object, through the SDK's public ``Minio.put_object`` only.

``put_object(bucket, key, data, length=-1, part_size=N)`` reads ``data`` (anything with ``read(n)``) a part at a
time: a body that fits one part is a single PUT, a larger one a multipart upload that the SDK completes after the
last part, or aborts when anything fails, a read of ``data`` included. A :class:`Pipe` is that ``data``: the request
(on the event loop, :func:`write_stream`) or the sealing of outputs (in a worker thread, :class:`ObjectWriter`)
writes chunks into it while the SDK reads them in a worker thread of its own. The pipe holds about one part, so an
upload keeps about two parts in memory whatever its size, and receiving overlaps sending. A failure on either side
ends the other: a writer that gives up (too large, a client gone) makes the SDK's next read raise, so the SDK aborts
its multipart upload and nothing becomes visible; an SDK that failed makes the next write report it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from enum import Enum
from typing import Any, BinaryIO, cast

import anyio
from minio import Minio

from api.core.errors import StorageUnavailable, TooLarge, UploadAbandoned

PART = 5 * 1024 * 1024  # multipart upload parts: S3's minimum, to keep upload memory small
MAX_PARTS = 10_000  # S3's limit per multipart upload; parts grow past PART for inputs capped above ~48 GiB


def part_size(limit: int) -> int:
    """Parts of an upload of at most ``limit`` bytes: S3's minimum, grown so that S3's 10,000 parts hold it."""
    return max(PART, -(-limit // MAX_PARTS))


class PipeState(Enum):
    OPEN = "open"  # both sides at work
    CLOSED = "closed"  # the writer is done: the reader drains what is left, then reads the end
    ABANDONED = "abandoned"  # the writer gave up: the reader's next read raises (the SDK aborts)
    ENDED = "ended"  # the reader stopped (finished or failed): writes are refused


class Pipe:
    """Bytes from one writer (the event loop, or a thread) to one reading thread, at most about ``capacity`` held."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._cond = threading.Condition()
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._state = PipeState.OPEN
        # An event-loop writer waits on this (set from the reading thread) instead of blocking the loop.
        self._room: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- the writer's side ---------------------------------------------------------------------------------

    async def put(self, chunk: bytes) -> bool:
        """Hand ``chunk`` on from the event loop, waiting while the pipe is full. False: the reader has stopped."""
        while True:
            with self._cond:
                if self._state is PipeState.ENDED:
                    return False
                if self._size < self._capacity:
                    self._append(chunk)
                    return True
                if self._room is None:
                    self._room, self._loop = asyncio.Event(), asyncio.get_running_loop()
                self._room.clear()
            await self._room.wait()

    def write(self, chunk: bytes) -> bool:
        """Hand ``chunk`` on from a thread, blocking while the pipe is full. False: the reader has stopped."""
        with self._cond:
            while self._state is not PipeState.ENDED and self._size >= self._capacity:
                self._cond.wait()
            if self._state is PipeState.ENDED:
                return False
            self._append(chunk)
            return True

    def close(self) -> None:
        """Everything is written: the reader gets what is left, then the end."""
        self._move({PipeState.OPEN}, PipeState.CLOSED)

    def abandon(self) -> None:
        """The writer gives up: the reader's next read raises."""
        self._move({PipeState.OPEN, PipeState.CLOSED}, PipeState.ABANDONED)

    # --- the reader's side ---------------------------------------------------------------------------------

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (all held: -1), once that many are held or the writer is done; ``b""`` at the end."""
        with self._cond:
            want = self._capacity if n < 0 else min(n, self._capacity)
            while self._state is PipeState.OPEN and self._size < want:
                self._cond.wait()
            if self._state is PipeState.ABANDONED:
                raise UploadAbandoned("the writer gave the upload up")
            taken: list[bytes] = []
            room = self._size if n < 0 else n
            while self._chunks and room > 0:
                chunk = self._chunks.popleft()
                if len(chunk) > room:  # the rest of it stays first in line
                    chunk, rest = chunk[:room], chunk[room:]
                    self._chunks.appendleft(rest)
                taken.append(chunk)
                room -= len(chunk)
                self._size -= len(chunk)
            self._wake_writer()
            return b"".join(taken)

    def end(self) -> None:
        """The reader has stopped: nothing more is accepted, and what is held is dropped."""
        with self._cond:
            self._state = PipeState.ENDED
            self._chunks.clear()
            self._size = 0
            self._wake_writer()

    # --- both ----------------------------------------------------------------------------------------------

    def _append(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._size += len(chunk)
        self._cond.notify_all()

    def _move(self, sources: set[PipeState], target: PipeState) -> None:
        with self._cond:
            if self._state in sources:
                self._state = target
            self._cond.notify_all()

    def _wake_writer(self) -> None:
        """With the lock held: a writer waiting for room looks again."""
        self._cond.notify_all()
        if self._room is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._room.set)


def put_stream(client: Minio, bucket: str, key: str, pipe: Pipe, size_of_part: int) -> None:
    """Upload what ``pipe`` yields to ``key`` (blocking): stored once the writer closed it, aborted otherwise.

    One part at a time (``num_parallel_uploads=1``): the SDK's part pool reports a failed part only after the last
    one, and leaves its threads waiting when a read fails; the pipe already overlaps receiving with sending."""
    try:
        # The SDK documents ``data`` as "an object having callable read() returning bytes": a pipe is one.
        data = cast(BinaryIO, pipe)
        result = client.put_object(bucket, key, data, -1, part_size=size_of_part, num_parallel_uploads=1)
    finally:
        pipe.end()
    # S3 may answer 200 and put its error in the body (once it has started its keep-alive): no ETag, no object.
    # The SDK saw no error, so the multipart upload stays open: the bucket's lifecycle rule removes it.
    if not result.etag:
        raise StorageUnavailable("S3 did not complete the upload")


Run = Callable[..., Awaitable[Any]]  # runs a blocking call in a worker thread, faults as StorageUnavailable


async def write_stream(
    client: Minio, bucket: str, key: str, chunks: AsyncIterator[bytes], limit: int, run: Run
) -> tuple[int, str]:
    """Stream ``chunks`` into ``key``; abort (nothing stored) past ``limit`` bytes. Returns size, sha256.

    ``run`` runs the SDK's upload in a worker thread; chunks wait in the pipe while a part is sent, so memory
    stays at a few parts whatever the size. A body smaller than one part is a single PUT."""
    size_of_part = part_size(limit)
    pipe = Pipe(size_of_part + 1)  # the SDK reads a part and one byte more (to see whether it was the last)
    upload = asyncio.ensure_future(run(put_stream, client, bucket, key, pipe, size_of_part))
    digest = hashlib.sha256()
    size = 0
    try:
        async for chunk in chunks:
            size += len(chunk)
            if size > limit:
                raise TooLarge(limit)
            digest.update(chunk)
            if not await pipe.put(chunk):
                break  # the upload stopped early: its error is raised below
        pipe.close()
        await upload
    except BaseException:
        # The SDK's next read raises, so it aborts its multipart upload: a partial object never becomes visible.
        with anyio.CancelScope(shield=True):
            pipe.abandon()
            await asyncio.gather(upload, return_exceptions=True)
        raise
    return size, digest.hexdigest()


class ObjectWriter:
    """A blocking, write-only file that streams into one S3 object: visible only once finished without an error
    (:meth:`abort` leaves nothing). For work already in a worker thread (sealing outputs); the SDK's upload runs in
    a thread of its own."""

    def __init__(self, client: Minio, bucket: str, key: str, limit: int = 0) -> None:
        size_of_part = part_size(limit)
        self._pipe = Pipe(size_of_part + 1)
        self._failure: BaseException | None = None
        self._thread = threading.Thread(
            target=self._upload, args=(client, bucket, key, size_of_part), name="s3-object-writer", daemon=True
        )
        self._thread.start()

    def _upload(self, client: Minio, bucket: str, key: str, size_of_part: int) -> None:
        try:
            put_stream(client, bucket, key, self._pipe, size_of_part)
        except BaseException as exc:  # handed to the writer's thread, which raises it
            self._failure = exc

    def write(self, data: bytes | memoryview) -> int:
        chunk = bytes(data)
        if not self._pipe.write(chunk):
            self._thread.join()
            self._raise_failure()
            raise StorageUnavailable("S3 ended the upload early")
        return len(chunk)

    def flush(self) -> None:
        """Parts go out as they fill; the rest when the writer is finished."""

    def finish(self) -> None:
        self._pipe.close()
        self._thread.join()
        self._raise_failure()

    def abort(self) -> None:
        self._pipe.abandon()
        with contextlib.suppress(Exception):  # best effort; the upload never completed either way
            self._thread.join()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure
