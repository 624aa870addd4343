"""Background work: one coalescing task per tenant, and the reconciler loop that finds due work.

Work for one tenant never runs twice at once in a process: a kick while it runs marks it dirty and it
runs once more afterwards. Across replicas, a run first claims the tenant's row (renewed while it runs,
:func:`provisioner.core.store.claim_tenant`); a tenant another replica holds is looked at again a moment later, and a
claim of a replica that died lapses after ``leader_lease_seconds``. The blocking work (SQLAlchemy, Kubernetes,
MinIO, callbacks) runs in threads. A tenant that reports it must wait (``run_tenant`` returns seconds) is
re-queued with a timer, never slept on. Only the leader (:mod:`provisioner.infra.leader`) looks for due work and sweeps.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from provisioner.core import lifecycle, store, sweeper
from provisioner.core.plan import RunMemory
from provisioner.infra.leader import LeaderElector
from provisioner.infra.s3users import S3AdminError
from provisioner.infra.services import Services

log = logging.getLogger(__name__)
T = TypeVar("T")


class KeyedRunner:
    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._dirty: dict[str, Callable[[], Awaitable[None]]] = {}

    def kick(self, key: str, work: Callable[[], Awaitable[None]]) -> None:
        if key in self._tasks:
            self._dirty[key] = work
            return
        self._tasks[key] = asyncio.get_running_loop().create_task(self._run(key, work), name=key)

    async def _run(self, key: str, work: Callable[[], Awaitable[None]]) -> None:
        try:
            while True:
                try:
                    await work()
                except Exception:
                    log.exception("background work %s failed", key)
                next_work = self._dirty.pop(key, None)
                if next_work is None:
                    return
                work = next_work
        finally:
            self._tasks.pop(key, None)

    async def drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    async def cancel(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)


class Scheduler:
    """What the app's request handlers and the reconciler use to start background work."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self.runner = KeyedRunner()
        self.memory = RunMemory()
        # Own threads: slow tenant work never delays the request path (which uses the default pool).
        self.pool = ThreadPoolExecutor(max_workers=svc.settings.worker_threads, thread_name_prefix="tenant")
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._flags: dict[str, list[bool]] = {}  # tenant -> [force, due] of kicks not yet run
        self._ran: dict[str, list[asyncio.Future[None]]] = {}  # tenant -> waiters for the end of its next run
        settings = svc.settings
        self.replica = settings.replica_id
        self.claim_seconds = float(settings.leader_lease_seconds)
        self.elector = (
            LeaderElector(
                svc.kube,
                settings.leader_lease_namespace,
                settings.leader_lease_name,
                self.replica,
                settings.leader_lease_seconds,
                svc.clock,
            )
            if settings.leader_election
            else None
        )

    @property
    def leading(self) -> bool:
        return self.elector is None or self.elector.leading

    async def _in_pool(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    async def close(self) -> None:
        for handle in self._timers.values():
            handle.cancel()
        await self.runner.cancel()
        if self.elector is not None:
            await asyncio.to_thread(self.elector.release)
        self.pool.shutdown(wait=True, cancel_futures=True)

    def _later(self, tenant_id: str, seconds: float, force: bool = False) -> None:
        previous = self._timers.pop(tenant_id, None)
        if previous is not None:
            previous.cancel()
        self._timers[tenant_id] = asyncio.get_running_loop().call_later(
            seconds, lambda: self.kick_tenant(tenant_id, force=force, due=True)
        )

    async def _renew(self, tenant_id: str) -> None:
        while True:
            await asyncio.sleep(self.claim_seconds / 3)
            await self._in_pool(
                store.claim_tenant, self.svc.sessions, tenant_id, self.replica, self.svc.clock(), self.claim_seconds
            )

    def kick_tenant(self, tenant_id: str, force: bool = False, due: bool = False) -> None:
        """Run the tenant's work (once more, if it is running). Flags of kicks that meet are merged, so a forced
        kick is never replaced by a plain one. ``due``: skip the backoff; ``force``: also revive a failed tenant."""
        flags = self._flags.setdefault(tenant_id, [False, False])
        flags[0] |= force
        flags[1] |= due or force

        async def work() -> None:
            forced, now = self._flags.pop(tenant_id, [False, False])
            svc = self.svc
            claim = await self._in_pool(
                store.claim_tenant, svc.sessions, tenant_id, self.replica, svc.clock(), self.claim_seconds
            )
            if claim is store.TenantClaim.GONE:
                return
            if claim is store.TenantClaim.HELD:
                self._later(tenant_id, 1.0, force=forced)  # another replica works on it: look again shortly
                return
            renewer = asyncio.create_task(self._renew(tenant_id))
            try:
                again = await self._in_pool(lifecycle.run_tenant, svc, tenant_id, forced, now, self.memory)
            finally:
                renewer.cancel()
                for waiter in self._ran.pop(tenant_id, []):
                    if not waiter.done():
                        waiter.set_result(None)
                await self._in_pool(store.release_tenant, svc.sessions, tenant_id, self.replica)
            if again is not None:
                # Re-queued, not slept on: the thread is free for other tenants meanwhile.
                self._later(tenant_id, again)

        self.runner.kick(f"tenant:{tenant_id}", work)

    async def ran(self, tenant_id: str, timeout: float) -> None:
        """Return when a run of the tenant in this process ends, or after ``timeout`` seconds: a start waiting for
        its tenant answers as soon as the run that made it ready ends here (runs of other replicas are polled)."""
        waiter = asyncio.get_running_loop().create_future()
        self._ran.setdefault(tenant_id, []).append(waiter)
        try:
            await asyncio.wait({waiter}, timeout=timeout)
        finally:
            waiting = self._ran.get(tenant_id, [])
            if waiter in waiting:
                waiting.remove(waiter)
                if not waiting:
                    self._ran.pop(tenant_id, None)

    def kick_grant(self, grant_id: int) -> None:
        async def work() -> None:
            tenant_id = await self._in_pool(lifecycle.resolve_grant, self.svc, grant_id)
            if tenant_id is not None:
                self.kick_tenant(tenant_id, due=True)

        self.runner.kick(f"grant:{grant_id}", work)

    async def reconcile_once(self) -> tuple[list[int], list[str]]:
        received, tenant_ids = await asyncio.to_thread(store.due_work, self.svc.sessions, self.svc.clock())
        for grant_id in received:
            self.kick_grant(grant_id)
        for tenant_id in tenant_ids:
            self.kick_tenant(tenant_id)
        return received, tenant_ids

    async def lead_forever(self) -> None:
        """Take or renew the leader Lease every third of its duration."""
        if self.elector is None:
            return
        while True:
            await asyncio.to_thread(self.elector.step)
            await asyncio.sleep(self.svc.settings.leader_lease_seconds / 3)

    async def reconcile_forever(self) -> None:
        while True:
            if self.leading:
                try:
                    await self.reconcile_once()
                except Exception:
                    log.exception("reconciler pass failed")
            await asyncio.sleep(self.svc.settings.reconcile_interval_seconds)

    async def sweep_forever(self) -> None:
        """The storage safety net (:mod:`provisioner.core.sweeper`): the bucket's abort rule once, then a sweep per
        ``sweep_interval_seconds``. A store that is down is tried again at the next pass."""
        while not self.leading:
            await asyncio.sleep(1.0)
        try:
            kept = await asyncio.to_thread(self.svc.storage.ensure_lifecycle, self.svc.settings.multipart_abort_days)
            if not kept:
                # MinIO refuses the rule; it aborts stale uploads itself (api stale_uploads_expiry).
                log.info("the store keeps no abort-incomplete-multipart rule: its own expiry of stale uploads applies")
        except S3AdminError as exc:
            log.warning("bucket lifecycle rule not set: %s", exc)
        while True:
            if self.leading:
                try:
                    await asyncio.to_thread(sweeper.sweep, self.svc)
                except Exception:
                    log.exception("sweep failed")
            await asyncio.sleep(self.svc.settings.sweep_interval_seconds)
