"""One replica at a time does a piece of work on a job: a claim is an annotation on the job's Workflow, written only
if the Workflow is still at the resourceVersion its writer read (a faster replica makes the slower one read again).

A claim's value is ``"<replica id> <epoch>"``; its holder renews it every third of ``stale_seconds`` while it works
and removes it when done. A claim that was not renewed for ``stale_seconds`` (its replica died) may be taken over.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from enum import StrEnum

from api.backends.kube import TenantKube
from api.core.errors import KubeRejected, KubeUnavailable


class Claim(StrEnum):
    MINE = "mine"  # this replica holds it: do the work
    TAKEN = "taken"  # another live replica holds it: wait for its result
    GONE = "gone"  # the Workflow is gone: nobody can claim; do the work without one


class WorkflowClaims:
    def __init__(
        self,
        kube: TenantKube,
        annotation: str,
        stale_seconds: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.kube, self.annotation = kube, annotation
        self.stale_seconds = stale_seconds
        self.clock = clock
        self.identity = uuid.uuid4().hex[:16]

    def _mine(self) -> str:
        return f"{self.identity} {self.clock():.3f}"

    def _holder(self, value: str | None) -> str | None:
        """The live holder of a claim's value, or None (no claim, unreadable, stale)."""
        try:
            holder, at = (value or "").split(" ", 1)
            return holder if self.clock() - float(at) < self.stale_seconds else None
        except ValueError:
            return None

    async def claim(self, job: str) -> Claim:
        for _ in range(20):
            read = await self.kube.workflow_annotations(job)
            if read is None:
                return Claim.GONE
            annotations, version = read
            holder = self._holder(annotations.get(self.annotation))
            if holder is not None and holder != self.identity:
                return Claim.TAKEN
            if await self.kube.annotate_workflow(job, {self.annotation: self._mine()}, version):
                return Claim.MINE
        return Claim.TAKEN  # the Workflow keeps changing (its controller): wait and ask again

    async def renewing(self, job: str) -> None:
        """Renew this replica's claim on ``job`` until cancelled."""
        while True:
            await asyncio.sleep(self.stale_seconds / 3)
            with contextlib.suppress(KubeUnavailable, KubeRejected):
                read = await self.kube.workflow_annotations(job)
                if read is None or (read[0].get(self.annotation) or "").split(" ")[0] != self.identity:
                    return  # gone, or taken over after ours went stale: the other replica's now
                await self.kube.annotate_workflow(job, {self.annotation: self._mine()}, read[1])

    async def release(self, job: str) -> None:
        """Remove this replica's claim (best effort: unremoved, it goes stale)."""
        with contextlib.suppress(KubeUnavailable, KubeRejected):
            read = await self.kube.workflow_annotations(job)
            if read is not None and self._holder(read[0].get(self.annotation)) == self.identity:
                await self.kube.annotate_workflow(job, {self.annotation: None}, read[1])
