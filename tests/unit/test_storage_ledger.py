"""The storage quota is exact under concurrency within an API process: writes reserve before they write, and a
reservation is released when its write ends, fails or is refused (issue #26: 20 parallel starts stored 2.3x the
quota)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from api.backends.s3 import ObjectStore
from api.services.ledger import QuotaExceeded, StorageLedger
from templates.keys import KeyLayout


class Listed:
    """What S3 lists under the tenant's prefix (the ledger's other half)."""

    def __init__(self, stored: int = 0) -> None:
        self.keys = KeyLayout("tenants/t-1")
        self.stored = stored

    async def list_prefix(self, prefix: str) -> list[dict[str, Any]]:
        await asyncio.sleep(0.001)  # a real round trip lets other starts in
        return [{"key": f"{prefix}/x", "size": self.stored}] if self.stored else []


def test_parallel_reservations_never_exceed_the_quota() -> None:
    store, ledger = Listed(), StorageLedger()
    granted: list[int] = []
    refused: list[int] = []

    async def start(i: int, gate: asyncio.Event) -> None:
        try:
            async with ledger.reserve(cast(ObjectStore, store), 16, 3):
                granted.append(i)
                await gate.wait()  # every granted write is still under way
        except QuotaExceeded as exc:
            refused.append(exc.free)

    async def run() -> None:
        gate = asyncio.Event()
        tasks = [asyncio.create_task(start(i, gate)) for i in range(20)]
        while len(granted) + len(refused) < 20:
            await asyncio.sleep(0.01)
        assert ledger.reserved == 15 and len(granted) == 5  # 5 x 3 <= 16 < 6 x 3
        assert set(refused) == {1}
        gate.set()
        await asyncio.gather(*tasks)
        assert ledger.reserved == 0  # released when the writes ended

    asyncio.run(run())


def test_stored_bytes_count_and_a_stream_gets_what_is_free() -> None:
    store, ledger = Listed(stored=10), StorageLedger()

    async def run() -> None:
        async with ledger.reserve(cast(ObjectStore, store), 16, 100, at_least=1) as limit:
            assert limit == 6  # an upload of unknown length may grow to what is free
            with pytest.raises(QuotaExceeded):
                async with ledger.reserve(cast(ObjectStore, store), 16, 1, at_least=1):
                    pass
        with pytest.raises(QuotaExceeded):
            async with ledger.reserve(cast(ObjectStore, store), 16, 7):  # a declared 7 bytes: refused whole
                pass
        try:
            async with ledger.reserve(cast(ObjectStore, store), 16, 6):
                raise RuntimeError("the write failed")
        except RuntimeError:
            pass
        assert ledger.reserved == 0

    asyncio.run(run())
