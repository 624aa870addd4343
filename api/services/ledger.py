"""The contract's storage quota, exact under concurrency within an API process: what is in S3 (listed) plus what
writes under way have reserved. A write (an upload, a job's snapshot of its inputs) reserves its bytes before it
writes and releases them when it ends; by then its objects are listed, or gone. Two replicas of one tenant's API
keep a ledger each: together they may overshoot by what one start or upload of each has in flight."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from api.backends.s3 import ObjectStore
from api.services.listings import used_bytes


class QuotaExceeded(Exception):
    """Not enough of the storage quota is left: ``free`` bytes (after the writes under way)."""

    def __init__(self, free: int) -> None:
        super().__init__(f"{max(free, 0)} bytes of the contract's storage quota are free")
        self.free = max(free, 0)


class StorageLedger:
    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self.reserved = 0

    @asynccontextmanager
    async def reserve(
        self, store: ObjectStore, quota: int, wanted: int, at_least: int | None = None
    ) -> AsyncIterator[int]:
        """Reserve ``wanted`` bytes (or as many as are free, down to ``at_least``) for the block; yields how many."""
        async with self._lock:  # one reservation at a time: each sees the others' bytes
            free = quota - await used_bytes(store) - self.reserved
            granted = min(wanted, free)
            if free <= 0 or granted < (wanted if at_least is None else at_least):
                raise QuotaExceeded(free)
            self.reserved += granted
        try:
            yield granted
        finally:
            self.reserved -= granted
