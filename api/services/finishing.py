"""What the API owes a job once it has finished: its pods' logs stored, its pods deleted, its own S3 keys revoked.

Why the API and not Argo: Argo's wait container archives a log by opening ``/var/run/argo/ctr/main/combined``, a
file in a volume the worker can write, and follows a symlink planted there to the wait container's own secrets.
So Argo archives nothing here (``archiveLogs: false``); the API reads the kubelet's copy of the worker's output
(written by the container runtime, out of the pod's reach), at most ``log_max_bytes`` of it, with a visible marker
where it was cut, and stores it under the job's own keys with its own credentials (the storage quota counts it).
Deleting the pods then ends the executor's projected token (bound to its pod), and revoking the job's S3 keys ends
what a stolen copy of them could do.

Every finished Workflow carries ``LABEL_FINISH=pending`` until all of that is done; the loop lists them, so an API
restart, an outage of S3 or Kubernetes, or two replicas doing it at once lose nothing (each step is idempotent).
Argo's own pod GC (``podGC.deleteDelayDuration``, 10 min by default) is the backstop when the API is away longer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from api.backends.kube import JobPod
from api.core.errors import ArgoNotFound, ArgoUnavailable, KubeRejected, KubeUnavailable, StorageUnavailable
from api.services import loops
from api.services.jobkeys import JobKeys
from api.services.jobviews import asset_name
from api.services.logs import MAIN, capped, cut_marker
from api.services.tenant import TenantContext
from templates.jobs import JOB_ID

log = logging.getLogger(__name__)

RETRYABLE = (ArgoUnavailable, StorageUnavailable, KubeUnavailable)
PARALLEL = 4


class Finisher:
    def __init__(self, tenant: TenantContext, keys: JobKeys) -> None:
        self.tenant = tenant
        self.keys = keys
        self.settings = tenant.settings
        self._gate = asyncio.Semaphore(PARALLEL)

    async def run(self) -> None:
        await loops.forever(self.tick, lambda: self.settings.finish_poll_seconds, "finishing jobs")

    async def tick(self) -> list[str]:
        """One round; the jobs settled in it."""
        # Ours only: a Workflow of another shape (made with a stolen API token) is not settled here.
        listed = [(job, uid) for job, uid in await self.tenant.argo.finished_with_pending_finish() if JOB_ID.match(job)]
        results = await asyncio.gather(*(self._guarded(job) for job, _ in listed), return_exceptions=True)
        settled = []
        for (job, _), result in zip(listed, results, strict=True):
            if result is True:
                settled.append(job)
            elif isinstance(result, BaseException) and not isinstance(result, RETRYABLE):
                log.error("finishing job %s failed: %s", job, type(result).__name__, exc_info=result)
        return settled

    async def _guarded(self, job: str) -> bool:
        # Keys first and outside the gate: a long sealing of another job never delays a revocation.
        await self.keys.revoke(job)
        async with self._gate:
            return await self.finish(job)

    async def finish(self, job: str) -> bool:
        """Settle one finished job; False while one of its pods is still running (a terminated job's wait
        container may still be saving its outputs): the next round tries again."""
        # A completed Workflow has its outputs saved (Argo completes it once the wait containers reported): its
        # keys went first (_guarded), whatever happens to its logs below.
        pods = await self.tenant.kube.job_pods(job)
        if not all(pod.done for pod in pods):
            return False
        for pod in pods:
            await self.store_log(job, pod)
            await self.tenant.kube.delete_pod(pod.name)
        cuts = await self.log_cuts(job)  # from what is stored: a round retried after the pods went still knows
        cuts.update(await self.seal(job))
        await self.tenant.kube.settle_finish(job, cuts)  # a Workflow deleted meanwhile is no error
        return True

    async def log_cuts(self, job: str) -> dict[str, str]:
        """The job's stored logs that were cut (only a cut log is longer than the cap: the marker follows it)."""
        limit = self.settings.log_max_bytes
        cuts = {}
        for entry in await self.tenant.storage.list_prefix(self.tenant.storage.keys.job_logs(job)):
            if str(entry["key"]).endswith(".log") and int(entry["size"]) > limit:
                pod = str(entry["key"]).rsplit("/", 1)[-1].removesuffix(".log")
                cuts[f"log:{pod}"] = f"cut at {limit} bytes (the log cap)"
        return cuts

    async def seal(self, job: str) -> dict[str, str]:
        """Seal the job's outputs now, once (whatever the readers later): the cut it hit, if any."""
        try:
            wf = await self.tenant.argo.get(job)
        except ArgoNotFound:
            return {}
        asset = await self.tenant.catalogue.get(asset_name(wf))
        if asset is None:
            return {}
        sealed = await self.tenant.sealing.seal(self.tenant.storage, asset, job, wf.metadata.uid or "")
        return {"outputs": sealed.damaged or "cut at limits.outputSize"} if sealed.over_cap else {}

    async def store_log(self, job: str, pod: JobPod) -> None:
        storage = self.tenant.storage
        key = storage.keys.job_log_archive(job, pod.name)
        if await storage.exists(key):
            return  # stored by an earlier round or another replica
        limit = self.settings.log_max_bytes
        source = self.tenant.kube.container_log(pod.name, MAIN, limit + 1)
        try:
            await storage.write_stream(key, capped(source, limit), limit + len(cut_marker(limit)))
        except KubeRejected as exc:  # the worker never started (an image that would not pull, say): no log
            if await storage.exists(key):
                return  # another replica stored it, then deleted the pod this read asked for
            note = f"[workflow-middlelayer: no log from pod {pod.name}: {exc}]\n".encode()
            await storage.write_stream(key, _once(note), len(note))


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data
