"""A small book of entries shared by several API replicas, kept in the annotations of one Kubernetes ``Lease`` and
changed only by optimistic updates (a write names the resourceVersion it read; a faster writer makes it read again).

Each entry is an annotation ``<prefix><id>`` with the value ``"<amount> <expiry epoch> <tag>"`` (the tag: what the
entry is for, free text without meaning here). Its writer renews the
expiry while it holds the entry and removes it when done; an entry whose replica died expires by itself, so a crash
holds nothing for longer than ``ttl_seconds``.

:meth:`LeaseBook.add` hands the caller the sum of the live entries together with the resourceVersion it read them
at, and writes the new entry only if nothing changed since: whatever the caller decided from that sum (and from
anything it read after it) still holds when the entry lands.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from api.backends.kube import TenantKube
from api.core.errors import KubeRejected, KubeUnavailable, LockBusy

ATTEMPTS = 200
# Live entries at most: each is one annotation of up to ~1.1 KiB (its tag a key), and a Lease's annotations hold at
# most 256 KiB. Past this many writes under way, a new one is refused (retryable) rather than the book broken.
MAX_ENTRIES = 160


class Entry(NamedTuple):
    amount: int
    expiry: float  # epoch seconds
    tag: str


class LeaseBook:
    def __init__(
        self,
        kube: TenantKube,
        name: str,
        prefix: str,
        ttl_seconds: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.kube, self.name, self.prefix = kube, name, prefix
        self.ttl_seconds = ttl_seconds
        self.clock = clock
        self._mine: dict[str, Entry] = {}  # this process's live entries (renewed; re-added if they expired)

    def _live(self, lease: dict[str, Any]) -> dict[str, Entry]:
        now = self.clock()
        entries: dict[str, Entry] = {}
        for key, value in ((lease.get("metadata") or {}).get("annotations") or {}).items():
            if not key.startswith(self.prefix):
                continue
            try:
                amount, expiry, tag = [*str(value).split(" ", 2), ""][:3]
                entry = Entry(int(amount), float(expiry), tag)
            except ValueError:
                continue  # not ours to read: it holds nothing
            if entry.expiry > now:
                entries[key[len(self.prefix) :]] = entry
        return entries

    def _body(self, version: str | None, entries: dict[str, Entry]) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "name": self.name,
            "annotations": {f"{self.prefix}{k}": f"{e.amount} {e.expiry:.3f} {e.tag}" for k, e in entries.items()},
        }
        if version:
            meta["resourceVersion"] = version
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta, "spec": {}}

    async def _change(self, change: Callable[[dict[str, Entry]], Awaitable[bool]]) -> None:
        """Read the book, let ``change`` edit its live entries (False: nothing to write), write it back if nobody
        wrote in between; otherwise read again."""
        pause = 0.002
        for _ in range(ATTEMPTS):
            lease = await self.kube.get_lease(self.name)
            entries = self._live(lease) if lease is not None else {}
            if not await change(entries):
                return
            if lease is None:
                written = await self.kube.create_lease(self._body(None, entries))
            else:
                written = await self.kube.replace_lease(
                    self.name, self._body(str(lease["metadata"]["resourceVersion"]), entries)
                )
            if written is not None:
                return
            await asyncio.sleep(pause * (0.5 + random.random()))  # jitter: replicas do not retry in step
            pause = min(pause * 2, 0.05)
        raise LockBusy("the storage quota's shared book is busy; retry")

    async def add(self, tag: str, decide: Callable[[dict[str, Entry]], Awaitable[int]]) -> tuple[str, int]:
        """Add an entry: ``decide`` gets the live entries (by id) and returns the amount to hold (or raises to
        refuse; nothing is written then). Returns the entry's id and its amount."""
        entry = uuid.uuid4().hex[:16]
        held = 0

        async def change(entries: dict[str, Entry]) -> bool:
            nonlocal held
            if len(entries) >= MAX_ENTRIES:
                raise LockBusy(f"{len(entries)} writes are under way for this tenant; retry")
            held = await decide(dict(entries))
            entries[entry] = Entry(held, self.clock() + self.ttl_seconds, tag)
            return True

        await self._change(change)
        self._mine[entry] = Entry(held, 0.0, tag)
        return entry, held

    async def renew(self, entry: str) -> None:
        mine = self._mine.get(entry)
        if mine is None:
            return

        async def change(entries: dict[str, Entry]) -> bool:
            # Expired meanwhile (renewals failed for a while): put back, its write still holds those bytes.
            entries[entry] = mine._replace(expiry=self.clock() + self.ttl_seconds)
            return True

        await self._change(change)

    async def remove(self, entry: str) -> None:
        self._mine.pop(entry, None)

        async def change(entries: dict[str, Entry]) -> bool:
            return entries.pop(entry, None) is not None

        await self._change(change)

    async def renewing(self, entry: str) -> None:
        """Renew ``entry`` every third of its lifetime until cancelled (a Kubernetes outage skips a round)."""
        while True:
            await asyncio.sleep(self.ttl_seconds / 3)
            try:
                await self.renew(entry)
            except (KubeUnavailable, KubeRejected):  # (LockBusy too) it lives on until it expires: try again
                continue
