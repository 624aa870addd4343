"""The contract's storage quota, exact under concurrency: what is in S3 (listed) plus what writes under way have
reserved. A write (an upload, a job's snapshot of its inputs) reserves its bytes before it writes and releases them
when it ends; by then its objects are listed, or gone. A reservation names the key (or folder) it writes: while it
lives, what is listed there is not counted, its reserved bytes are (so an object written and not yet released is
counted once, and an object being replaced is counted as its new size).

- One replica: the reservations are kept in this process, taken one at a time under a lock.
- Several replicas: they keep them in one shared book (:class:`api.backends.leasebook.LeaseBook`, a Lease in the
  tenant's namespace). A reservation reads the book, then lists S3, then writes its entry only if the book is still
  as it read it. A write that ended meanwhile removed its entry after its objects were complete, so either its
  objects are in the listing or the book changed and the reservation reads again: the quota holds exactly across
  replicas. A replica that dies holds its reservations until they expire (``ttl_seconds``, renewed while a write
  runs)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from api.backends.leasebook import Entry, LeaseBook
from api.backends.s3 import ObjectStore
from api.core.errors import KubeRejected, KubeUnavailable


class QuotaExceeded(Exception):
    """Not enough of the storage quota is left: ``free`` bytes of ``quota`` (after the writes under way)."""

    def __init__(self, free: int, quota: int) -> None:
        self.free, self.quota = max(free, 0), quota
        super().__init__(f"{self.free} of its {quota} bytes are free (WML_API_QUOTA_STORAGE_BYTES)")


class StorageLedger:
    def __init__(self, book: LeaseBook | None = None) -> None:
        self._lock = asyncio.Lock()
        self._live: dict[int, tuple[int, str]] = {}  # this process's reservations (one replica): bytes, key
        self.book = book

    @property
    def reserved(self) -> int:
        return sum(amount for amount, _ in self._live.values())

    @asynccontextmanager
    async def reserve(
        self, store: ObjectStore, quota: int, wanted: int, covers: str, at_least: int | None = None
    ) -> AsyncIterator[int]:
        """Reserve ``wanted`` bytes (or as many as are free, down to ``at_least``) for the block, which writes
        ``covers`` (a key, or a folder of keys); yields how many."""
        least = wanted if at_least is None else at_least
        if self.book is not None:
            async with self._shared(self.book, store, quota, wanted, least, covers) as granted:
                yield granted
            return
        token = object()
        async with self._lock:  # one reservation at a time: each sees the others' bytes
            live = list(self._live.values())
            listed = await store.list_prefix(store.keys.prefix)
            granted = _grant(quota - _used(listed, live), quota, wanted, least)
            self._live[id(token)] = (granted, covers)
        try:
            yield granted
        finally:
            del self._live[id(token)]

    @asynccontextmanager
    async def _shared(
        self, book: LeaseBook, store: ObjectStore, quota: int, wanted: int, least: int, covers: str
    ) -> AsyncIterator[int]:
        async def decide(entries: dict[str, Entry]) -> int:
            # Listed on every attempt: a write may have begun, ended and left the book between two of them.
            listed = await store.list_prefix(store.keys.prefix)
            live = [(e.amount, e.tag) for e in entries.values()]
            return _grant(quota - _used(listed, live), quota, wanted, least)

        entry, granted = await book.add(covers, decide)
        renewer = asyncio.ensure_future(book.renewing(entry))
        try:
            yield granted
        finally:
            renewer.cancel()
            await asyncio.wait([renewer])  # (its own end, never a cancel of this block)
            # Unremoved (Kubernetes away), the entry expires by itself: a write that succeeded must not fail here.
            with contextlib.suppress(KubeUnavailable, KubeRejected):
                await asyncio.shield(book.remove(entry))


def _used(listed: list[dict[str, Any]], live: list[tuple[int, str]]) -> int:
    """What is stored, with each live reservation counted instead of what is listed where it writes."""
    covered = [key for _, key in live]
    stored: int = sum(
        int(e["size"]) for e in listed if not any(e["key"] == key or e["key"].startswith(key + "/") for key in covered)
    )
    return stored + sum(amount for amount, _ in live)


def _grant(free: int, quota: int, wanted: int, least: int) -> int:
    granted = min(wanted, free)
    if free <= 0 or granted < least:
        raise QuotaExceeded(free, quota)
    return granted
