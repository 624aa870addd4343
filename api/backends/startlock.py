"""Places among the running jobs: a job start holds one while it creates its Workflow, so that the concurrent-job
quota holds exactly, also under parallel starts.

- One replica (``process``): this process is the only one creating the tenant's Workflows, so it keeps the set of
  running jobs itself — loaded from the Kubernetes API, grown by each create, reloaded only when the quota looks
  full (jobs that finished meanwhile free their places then). A start costs no extra call; creates run in parallel.
- Several replicas (``lease``): they share a Kubernetes ``Lease`` in the tenant's namespace as a mutex over
  *tenures*. A replica that has starts to make takes the Lease, reloads the running set (the other replicas' creates
  are in that quorum read: a replica gives the Lease back once its creates have answered), and then works exactly
  as one replica does — places counted in memory, creates in parallel — for every start that joins the tenure. It
  gives the Lease back when its last start is done; after ``tenure_seconds`` it admits no new start, and it waits
  ``yield_seconds`` before taking the Lease again, longer than the others take to ask for it, so they get their turn.
  A holder that died is replaced once the lease has not been renewed for ``lease_seconds`` (an optimistic update
  takes it over). A create whose answer never came is known to its own replica only: the quota may then be exceeded
  by one across replicas.
Running jobs are always read from the Kubernetes API, never from Argo Server, whose lists come from an informer
cache that can miss a Workflow created a moment ago.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from api.backends.kube import TenantKube
from api.core.errors import KubeRejected, KubeUnavailable, LockBusy, QuotaFull
from api.settings import StartLockMode
from templates.names import API_START_LEASE

LEASE_NAME = API_START_LEASE
log = logging.getLogger(__name__)
RECENT_SECONDS = 60.0  # how long a create without an answer keeps its place


Running = Callable[[], Awaitable[set[str]]]  # the names of the tenant's running jobs (Kubernetes API)


def _now() -> datetime:
    return datetime.now(UTC)


def _stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _report(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("giving the start lock back failed", exc_info=task.exception())


class StartLock:
    def __init__(
        self,
        mode: StartLockMode,
        kube: TenantKube,
        lease_seconds: int = 10,
        wait_seconds: float = 15.0,
        now: Callable[[], datetime] = _now,
        tenure_seconds: float = 0.5,
        yield_seconds: float = 0.05,
    ) -> None:
        self.mode = mode
        self.kube = kube
        self.lease_seconds = lease_seconds
        self.wait_seconds = wait_seconds
        self.now = now
        self.tenure_seconds = tenure_seconds
        self.yield_seconds = yield_seconds
        # lease mode: this replica's tenure (the Lease held, the starts in it)
        self._tenure = asyncio.Condition()
        self._holders = 0
        self._held: tuple[list[str], asyncio.Task[None]] | None = None  # (its resourceVersion, its renewer)
        self._since = 0.0  # when the tenure began
        self._gave_back = -1e9  # when this replica last gave the Lease back
        self.identity = uuid.uuid4().hex
        self._local = asyncio.Lock()
        self._running: set[str] | None = None  # process mode: None until loaded
        self._reserved: set[str] = set()
        # Creates as (when answered, whether the answer came): a reload's list may miss a create answered while it
        # ran, and a create whose answer was lost may still be committed; those count whatever the list says.
        self._recent: dict[str, tuple[float, bool]] = {}

    async def precheck(self, running: Running, quota: int) -> None:
        """Refuse early (before a start copies its inputs) when no place is free; the exact check is :meth:`slot`."""
        if self.mode is StartLockMode.LEASE:
            if len(await running()) >= quota:
                raise QuotaFull
            return
        async with self._local:
            await self._free_place(running, quota)

    @asynccontextmanager
    async def slot(
        self, job: str, running: Running, quota: int, refused: tuple[type[BaseException], ...] = ()
    ) -> AsyncIterator[None]:
        """Hold a place for ``job`` while its Workflow is created; raises :class:`QuotaFull` when none is free.
        ``refused``: errors that mean the create certainly did not happen (its place is freed at once)."""
        leased = self.mode is StartLockMode.LEASE
        if leased:
            await self._join()
        try:
            async with self._local:
                await self._free_place(running, quota)
                self._reserved.add(job)
            created = certainly_not = False
            try:
                yield
                created = True
            except refused:
                certainly_not = True
                raise
            finally:
                # No await here: a second cancellation cannot leave the reservation behind.
                self._reserved.discard(job)
                if not certainly_not:
                    self._recent[job] = (time.monotonic(), created)
                    if self._running is not None:
                        self._running.add(job)  # created, or perhaps created (no answer): it holds its place
        finally:
            if leased:
                self._leave()

    async def _free_place(self, running: Running, quota: int) -> None:
        """With the process lock held: there is a free place, reloading the running set if it looks full (finished
        jobs free their places then). Recent creates and reservations count whatever the reload says."""
        if self._running is not None and len(self._running | self._reserved) < quota:
            return
        started = time.monotonic()
        listed = await running()  # a quorum read: every create answered before it started is in it
        uncertain_since = started - RECENT_SECONDS
        self._recent = {name: v for name, v in self._recent.items() if v[0] >= uncertain_since}
        late = {name for name, (at, answered) in self._recent.items() if at >= started or not answered}
        self._running = listed | late
        if len(self._running | self._reserved) >= quota:
            raise QuotaFull

    def _draining(self) -> bool:
        return self._held is not None and time.monotonic() - self._since > self.tenure_seconds

    async def _join(self) -> None:
        """Join this replica's tenure, taking the Lease when it holds none (the running set is then reloaded)."""
        async with self._tenure:
            await self._tenure.wait_for(lambda: not self._draining())
            if self._held is None:
                pause = self._gave_back + self.yield_seconds - time.monotonic()
                if pause > 0:  # a tenure of ours just ended: the other replicas' turn first (they poll faster)
                    await asyncio.sleep(pause)
                version = [await self._acquire()]
                self._held = (version, asyncio.create_task(self._renew(version)))
                self._since = time.monotonic()
                self._running = None  # the other replicas created Workflows meanwhile: reload at the first check
            self._holders += 1

    def _leave(self) -> None:
        """A start of the tenure is done (no await: a cancelled start still leaves); the last one gives it back."""
        self._holders -= 1
        if self._holders == 0:
            asyncio.ensure_future(self._give_back()).add_done_callback(_report)

    async def _give_back(self) -> None:
        async with self._tenure:
            if self._holders or self._held is None:
                return  # a start joined meanwhile: the tenure goes on
            version, renewer = self._held
            self._held = None
            try:
                renewer.cancel()
                with contextlib.suppress(asyncio.CancelledError, KubeUnavailable, KubeRejected):
                    await renewer
                # Unreleased, the Lease expires after lease_seconds: a failed delete must not fail a start.
                with contextlib.suppress(KubeUnavailable, KubeRejected):
                    await self.kube.delete_lease(LEASE_NAME, version[0])
            finally:
                self._gave_back = time.monotonic()
                self._tenure.notify_all()  # starts waiting for a draining tenure take the next one

    async def _renew(self, version: list[str]) -> None:
        """Renew the held Lease every third of its duration."""
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            renewed = await self.kube.replace_lease(LEASE_NAME, self._lease(version[0]))
            if renewed is None:
                return  # lost (taken over): nothing left to renew
            version[0] = renewed

    def _lease(self, version: str | None = None) -> dict[str, Any]:
        now = _stamp(self.now())
        meta: dict[str, Any] = {"name": LEASE_NAME}
        if version:
            meta["resourceVersion"] = version
        spec = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.lease_seconds,
            "acquireTime": now,
            "renewTime": now,
        }
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta, "spec": spec}

    async def _acquire(self) -> str:
        """Hold the Lease; returns its resourceVersion (for a delete that cannot remove a successor's)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_seconds
        pause = 0.005
        while True:
            created = await self.kube.create_lease(self._lease())
            if created is not None:
                return created
            current = await self.kube.get_lease(LEASE_NAME)
            if current is not None and self._expired(current):
                taken = await self.kube.replace_lease(LEASE_NAME, self._lease(current["metadata"]["resourceVersion"]))
                if taken is not None:
                    return taken
            if loop.time() > deadline:
                raise LockBusy("another API replica holds the start lock; retry")
            await asyncio.sleep(pause * (0.5 + random.random()))  # jitter: replicas do not retry in step
            pause = min(pause * 2, 0.02)  # faster than a replica's yield between its own tenures

    def _expired(self, lease: dict[str, Any]) -> bool:
        spec = lease.get("spec") or {}
        renewed = spec.get("renewTime") or spec.get("acquireTime")
        if not renewed:
            return True
        at = datetime.fromisoformat(str(renewed).replace("Z", "+00:00"))
        return at + timedelta(seconds=int(spec.get("leaseDurationSeconds") or self.lease_seconds)) < self.now()
