"""The start lock of one replica: places are exact under parallel starts without a list on every start, finished jobs
free their places when the quota looks full, and a create whose answer was lost keeps its place."""

from __future__ import annotations

import asyncio
import contextlib
from typing import cast

import pytest

from api.backends.kube import TenantKube
from api.backends.startlock import StartLock
from api.core.errors import QuotaFull
from api.settings import StartLockMode


class Argo:
    """The running jobs as Argo would list them, and how often they were listed."""

    def __init__(self) -> None:
        self.running: set[str] = set()
        self.lists = 0

    async def names(self) -> set[str]:
        self.lists += 1
        await asyncio.sleep(0.001)
        return set(self.running)


def lock() -> StartLock:
    return StartLock(StartLockMode.PROCESS, cast(TenantKube, None))


class Refused(Exception):
    """The create was answered with a refusal: it certainly did not happen."""


async def start(gate: StartLock, argo: Argo, job: str, quota: int, fail: bool = False, refuse: bool = False) -> bool:
    try:
        async with gate.slot(job, argo.names, quota, refused=(Refused,)):
            await asyncio.sleep(0.01)  # the create
            if fail:
                raise RuntimeError("create failed")
            if refuse:
                raise Refused
            argo.running.add(job)
    except QuotaFull:
        return False
    return True


def test_twenty_parallel_starts_take_exactly_the_free_places() -> None:
    async def main() -> None:
        gate, argo = lock(), Argo()
        argo.running = {"old-1"}
        results = await asyncio.gather(*(start(gate, argo, f"job-{i}", 3) for i in range(20)))
        assert sum(results) == 2 and len(argo.running) == 3
        assert argo.lists <= 19  # loaded once, then only when full (the refused ones)

    asyncio.run(main())


def test_places_of_finished_jobs_are_found_when_full() -> None:
    async def main() -> None:
        gate, argo = lock(), Argo()
        assert await start(gate, argo, "a", 2) and await start(gate, argo, "b", 2)
        lists = argo.lists
        assert await start(gate, argo, "c", 2) is False
        argo.running.discard("a")  # finished
        assert await start(gate, argo, "c", 2)
        assert argo.lists > lists

    asyncio.run(main())


def test_no_argo_call_while_places_are_free() -> None:
    async def main() -> None:
        gate, argo = lock(), Argo()
        for i in range(5):
            assert await start(gate, argo, f"j{i}", 10)
        assert argo.lists == 1

    asyncio.run(main())


def test_a_create_without_an_answer_keeps_its_place() -> None:
    async def main() -> None:
        gate, argo = lock(), Argo()
        with pytest.raises(RuntimeError):
            await start(gate, argo, "x", 2, fail=True)  # the answer was lost: x may exist, unseen by any list yet
        assert await start(gate, argo, "a", 2)
        assert await start(gate, argo, "b", 2) is False  # x and a hold both places, although only a is listed
        argo.running.discard("a")  # a finished: its place is free, x still holds the other
        assert await start(gate, argo, "b", 2)
        assert await start(gate, argo, "c", 2) is False

    asyncio.run(main())


def test_a_refused_create_frees_its_place() -> None:
    async def main() -> None:
        gate, argo = lock(), Argo()
        with pytest.raises(Refused):
            await start(gate, argo, "x", 1, refuse=True)
        assert await start(gate, argo, "a", 1)

    asyncio.run(main())


def test_a_reservation_never_outlives_a_cancelled_start() -> None:
    async def main() -> None:
        gate, argo = lock(), Argo()
        slow = asyncio.create_task(start(gate, argo, "slow", 1))
        await asyncio.sleep(0.005)  # inside its create
        slow.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await slow
        assert not gate._reserved
        await asyncio.sleep(0)

    asyncio.run(main())


class Leases:
    """The Kubernetes Lease two replicas share: create fails when it exists, updates and deletes are optimistic."""

    def __init__(self) -> None:
        self.lease: dict | None = None
        self.version = 0
        self.taken = 0  # how often a replica took it

    async def create_lease(self, lease: dict) -> str | None:
        await asyncio.sleep(0.001)
        if self.lease is not None:
            return None
        self.version += 1
        self.lease = lease | {"metadata": {"name": "l", "resourceVersion": str(self.version)}}
        self.taken += 1
        return str(self.version)

    async def get_lease(self, name: str) -> dict | None:
        await asyncio.sleep(0.001)
        return self.lease

    async def replace_lease(self, name: str, lease: dict) -> str | None:
        await asyncio.sleep(0.001)
        if self.lease is None or lease["metadata"].get("resourceVersion") != self.lease["metadata"]["resourceVersion"]:
            return None
        self.version += 1
        self.lease = lease | {"metadata": {"name": "l", "resourceVersion": str(self.version)}}
        return str(self.version)

    async def delete_lease(self, name: str, version: str) -> None:
        await asyncio.sleep(0.001)
        if self.lease is not None and self.lease["metadata"]["resourceVersion"] == version:
            self.lease = None


def replicas(leases: Leases, count: int = 2, tenure: float = 0.5) -> list[StartLock]:
    return [StartLock(StartLockMode.LEASE, cast(TenantKube, leases), tenure_seconds=tenure) for _ in range(count)]


def test_two_replicas_take_exactly_the_free_places_creating_in_parallel() -> None:
    async def main() -> None:
        leases, argo = Leases(), Argo()
        gates = replicas(leases)
        argo.running = {"old-1"}
        in_flight = peak = 0

        async def create(gate: StartLock, job: str) -> bool:
            nonlocal in_flight, peak
            try:
                async with gate.slot(job, argo.names, 6):
                    in_flight += 1
                    peak = max(peak, in_flight)
                    await asyncio.sleep(0.01)
                    argo.running.add(job)
                    in_flight -= 1
            except QuotaFull:
                return False
            return True

        results = await asyncio.gather(*(create(gates[i % 2], f"job-{i}") for i in range(20)))
        assert sum(results) == 5 and len(argo.running) == 6
        assert peak > 1  # the starts of one tenure create side by side
        await asyncio.sleep(0.05)  # the last start hands the Lease back in a task of its own
        assert leases.lease is None  # given back when the last start was done

    asyncio.run(main())


def test_a_busy_replica_lets_the_other_one_take_its_turn() -> None:
    async def main() -> None:
        leases, argo = Leases(), Argo()
        busy, other = replicas(leases, tenure=0.05)
        done = asyncio.Event()

        async def keep_busy(worker: int) -> None:  # three overlapping loops: a start of busy is always in flight
            await asyncio.sleep(worker * 0.004)
            i = 0
            while not done.is_set():
                await start(busy, argo, f"busy-{worker}-{i}", 10_000)
                i += 1

        loader = asyncio.gather(*(keep_busy(w) for w in range(3)))
        await asyncio.sleep(0.02)
        assert await asyncio.wait_for(start(other, argo, "other", 10_000), timeout=2)  # not starved
        done.set()
        await loader
        assert leases.taken >= 3

    asyncio.run(main())
