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
            async with ledger.reserve(cast(ObjectStore, store), 16, 3, "tenants/t-1/w"):
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
        async with ledger.reserve(cast(ObjectStore, store), 16, 100, "tenants/t-1/w", at_least=1) as limit:
            assert limit == 6  # an upload of unknown length may grow to what is free
            with pytest.raises(QuotaExceeded):
                async with ledger.reserve(cast(ObjectStore, store), 16, 1, "tenants/t-1/w", at_least=1):
                    pass
        with pytest.raises(QuotaExceeded):
            # a declared 7 bytes: refused whole
            async with ledger.reserve(cast(ObjectStore, store), 16, 7, "tenants/t-1/w"):
                pass
        try:
            async with ledger.reserve(cast(ObjectStore, store), 16, 6, "tenants/t-1/w"):
                raise RuntimeError("the write failed")
        except RuntimeError:
            pass
        assert ledger.reserved == 0

    asyncio.run(run())


class Written:
    """S3 with one object already written by a reservation that has not ended yet."""

    def __init__(self) -> None:
        self.keys = KeyLayout("tenants/t-1")

    async def list_prefix(self, prefix: str) -> list[dict[str, Any]]:
        return [{"key": "tenants/t-1/jobs/j1/inputs/data", "size": 10}, {"key": "tenants/t-1/other", "size": 2}]


def test_a_written_object_of_a_live_reservation_counts_once() -> None:
    """The write landed, its reservation is not released yet: its 10 bytes count once (as reserved), not twice."""
    store, ledger = Written(), StorageLedger()

    async def main() -> int:
        async with (
            ledger.reserve(cast(ObjectStore, store), 30, 10, "tenants/t-1/jobs/j1/inputs"),
            ledger.reserve(cast(ObjectStore, store), 30, 100, "tenants/t-1/x", at_least=1) as second,
        ):
            return second

    assert asyncio.run(main()) == 30 - 10 - 2  # not 30 - 10 - 10 - 2
