"""The contract's storage quota, exact under concurrency: what is in S3 (listed) plus what writes under way have
reserved. A write (an upload, a job's snapshot of its inputs) reserves its bytes before it writes and releases them
when it ends; by then its objects are listed, or gone.

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

from api.backends.leasebook import LeaseBook
from api.backends.s3 import ObjectStore
from api.core.errors import KubeRejected, KubeUnavailable, LockBusy
from api.services.listings import used_bytes


class QuotaExceeded(Exception):
    """Not enough of the storage quota is left: ``free`` bytes of ``quota`` (after the writes under way)."""

    def __init__(self, free: int, quota: int) -> None:
        self.free, self.quota = max(free, 0), quota
        super().__init__(f"{self.free} of its {quota} bytes are free (WML_API_QUOTA_STORAGE_BYTES)")


class StorageLedger:
    def __init__(self, book: LeaseBook | None = None) -> None:
        self._lock = asyncio.Lock()
        self.reserved = 0  # this process's reservations (one replica)
        self.book = book

    @asynccontextmanager
    async def reserve(
        self, store: ObjectStore, quota: int, wanted: int, at_least: int | None = None
    ) -> AsyncIterator[int]:
        """Reserve ``wanted`` bytes (or as many as are free, down to ``at_least``) for the block; yields how many."""
        least = wanted if at_least is None else at_least
        if self.book is not None:
            async with self._shared(self.book, store, quota, wanted, least) as granted:
                yield granted
            return
        async with self._lock:  # one reservation at a time: each sees the others' bytes
            free = quota - await used_bytes(store) - self.reserved
            granted = _grant(free, quota, wanted, least)
            self.reserved += granted
        try:
            yield granted
        finally:
            self.reserved -= granted

    @asynccontextmanager
    async def _shared(
        self, book: LeaseBook, store: ObjectStore, quota: int, wanted: int, least: int
    ) -> AsyncIterator[int]:
        async def decide(reserved: int) -> int:
            return _grant(quota - await used_bytes(store) - reserved, quota, wanted, least)

        entry, granted = await book.add(decide)
        renewer = asyncio.ensure_future(book.renewing(entry))
        try:
            yield granted
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            # Unremoved (Kubernetes away), the entry expires by itself: a write that succeeded must not fail here.
            with contextlib.suppress(KubeUnavailable, KubeRejected, LockBusy):
                await asyncio.shield(book.remove(entry))


def _grant(free: int, quota: int, wanted: int, least: int) -> int:
    granted = min(wanted, free)
    if free <= 0 or granted < least:
        raise QuotaExceeded(free, quota)
    return granted
