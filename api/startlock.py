"""The start lock: a job start counts the running jobs and creates its Workflow as one step, so that the
concurrent-job quota holds exactly.

One API replica needs only a lock in its process. Several replicas of one tenant share a Kubernetes ``Lease`` in the
tenant's namespace as a mutex: whoever creates it holds it and deletes it when done; a holder that died is replaced
once the lease has not been renewed for ``lease_seconds`` (then the next start takes it over with an optimistic
update). Each replica still takes its process lock first, so at most one request per replica waits on the Lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from api.kube import Kube, KubeRejected, KubeUnavailable
from api.settings import StartLockMode
from templates.names import API_START_LEASE

LEASE_NAME = API_START_LEASE


class LockBusy(KubeUnavailable):
    """Another replica held the start lock for longer than a start may wait (retryable)."""


def _now() -> datetime:
    return datetime.now(UTC)


def _stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class StartLock:
    def __init__(
        self,
        mode: StartLockMode,
        kube: Kube,
        lease_seconds: int = 10,
        wait_seconds: float = 15.0,
        now: Callable[[], datetime] = _now,
    ) -> None:
        self.mode = mode
        self.kube = kube
        self.lease_seconds = lease_seconds
        self.wait_seconds = wait_seconds
        self.now = now
        self.identity = uuid.uuid4().hex
        self._local = asyncio.Lock()

    @asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        async with self._local:
            if self.mode is StartLockMode.PROCESS:
                yield
                return
            version = await self._acquire()
            try:
                yield
            finally:
                # Unreleased, the Lease expires after lease_seconds: a failed delete must not fail the start.
                with contextlib.suppress(KubeUnavailable, KubeRejected):
                    await self.kube.delete_lease(LEASE_NAME, version)

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
            pause = min(pause * 2, 0.1)

    def _expired(self, lease: dict[str, Any]) -> bool:
        spec = lease.get("spec") or {}
        renewed = spec.get("renewTime") or spec.get("acquireTime")
        if not renewed:
            return True
        at = datetime.fromisoformat(str(renewed).replace("Z", "+00:00"))
        return at + timedelta(seconds=int(spec.get("leaseDurationSeconds") or self.lease_seconds)) < self.now()
