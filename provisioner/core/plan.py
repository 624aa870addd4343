"""Which steps a run of a tenant runs: one pure decision (:func:`plan_run`) from the tenant's snapshot and what the
worker remembers of its last runs (:class:`RunMemory`), apart from the code that runs them (``core.lifecycle``).

Three kinds of run (:class:`PlanKind`):

- ``whole``: every step. Always after a restart, an operator's retry, a change of more than grants, or when the
  memory is older than ``max_age`` (which also repairs anything changed behind our back meanwhile).
- ``resumed``: the last run of this very snapshot waited at a step (``NotYet``): start there. A new tenant is re-run
  every quarter second while its API starts, and a whole pass (some 30 Kubernetes and MinIO calls) took CPU those
  pods need.
- ``grants``: only grants changed since a recent whole pass (a new grant of an asset the tenant has, a suspend, a
  resume, a terminate): run the steps marked ``on_grants``. A consumer who already has a tenant waits for its own
  token, not for every object re-applied.

Whatever the kind, the steps that make what a chosen step ``needs`` run too (:func:`with_producers`), and a run of
grants that finds more changed (a lost S3 key made anew) widens to every step after that point (:func:`widen`).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from provisioner.steps import Made, Snapshot, Step

Planned = tuple[tuple[int, Step], ...]  # steps with their place in the registry's list


class PlanKind(StrEnum):
    WHOLE = "whole"
    RESUMED = "resumed"
    GRANTS = "grants"


@dataclass(frozen=True)
class Plan:
    kind: PlanKind
    steps: Planned
    grants_only: bool = False  # a resumed run of grants stays one

    @property
    def whole(self) -> bool:
        """A whole pass: what the memory's age counts from."""
        return self.kind is PlanKind.WHOLE


@dataclass(frozen=True)
class Waited:
    snap: Snapshot
    index: int  # the step it waited at
    since: float  # when the whole pass it stands on began


@dataclass(frozen=True)
class Settled:
    snap: Snapshot
    since: float


@dataclass(frozen=True)
class Recall:
    """What the worker remembers of one tenant."""

    waited: Waited | None = None
    settled: Settled | None = None


def beyond_grants(snap: Snapshot) -> Snapshot:
    """The snapshot without its grants: what must be unchanged for a run of grants only."""
    return replace(snap, grant_ids=(), active_grant_ids=(), grant_states=(), grant_assets=())


def with_producers(steps: Sequence[Step], chosen: set[int]) -> Planned:
    """``chosen`` and every earlier step that makes what a chosen step needs, in the list's order."""
    picked = set(chosen)
    changed = True
    while changed:
        changed = False
        for i in sorted(picked):
            for product in steps[i].needs:
                for j in range(i):
                    if product in steps[j].makes and j not in picked:
                        picked.add(j)
                        changed = True
    return tuple((i, steps[i]) for i in sorted(picked))


def plan_run(steps: Sequence[Step], snap: Snapshot, recall: Recall, now: float, force: bool, max_age: float) -> Plan:
    """The steps this run of ``snap`` runs. Pure: same inputs, same plan."""
    everything = set(range(len(steps)))
    if force:  # an operator's retry always gets a whole pass
        return Plan(PlanKind.WHOLE, with_producers(steps, everything))
    settled = recall.settled
    grants_only = (
        settled is not None and now - settled.since <= max_age and beyond_grants(settled.snap) == beyond_grants(snap)
    )
    chosen = {i for i in everything if steps[i].on_grants} if grants_only else everything
    waited = recall.waited
    if waited is not None and waited.snap == snap and now - waited.since <= max_age and waited.index > 0:
        resumed = {i for i in chosen if i >= waited.index}
        return Plan(PlanKind.RESUMED, with_producers(steps, resumed), grants_only=grants_only)
    if grants_only:
        return Plan(PlanKind.GRANTS, with_producers(steps, chosen), grants_only=True)
    return Plan(PlanKind.WHOLE, with_producers(steps, chosen))


def widen(steps: Sequence[Step], plan: Plan, index: int, made: Made) -> Planned | None:
    """The steps to run after step ``index`` instead of the plan's, when what it made shows more changed than the
    plan assumed: a run of grants only whose S3 keys were made anew (they reach the MinIO users and the API's pods
    only through steps it skips) goes on with every step. None: the plan stands."""
    renewed = made.s3_keys is not None and made.s3_keys.renewed
    if plan.grants_only and renewed:
        return tuple((j, steps[j]) for j in range(index + 1, len(steps)))
    return None


class RunMemory:
    """What a worker remembers of its tenants' last runs, so the next run does less (see the module's doc). Kept in
    the worker's memory only, and shared by its threads."""

    def __init__(self, max_age: float = 30.0) -> None:
        self.max_age = max_age
        self._waited: dict[str, Waited] = {}
        self._settled: dict[str, Settled] = {}
        self._lock = threading.Lock()

    def recall(self, tenant_id: str) -> Recall:
        with self._lock:
            return Recall(self._waited.get(tenant_id), self._settled.get(tenant_id))

    def waiting(self, snap: Snapshot, index: int, now: float, whole: bool) -> None:
        """The run of ``snap`` waits at step ``index``. Its age counts from the whole pass it stands on: ``whole``,
        this run; else the resumed run's, or (a run of grants only) the last whole pass that went through."""
        with self._lock:
            previous = self._waited.get(snap.tenant_id)
            settled = self._settled.get(snap.tenant_id)
            if whole:
                since = now
            elif previous is not None and previous.snap == snap:
                since = previous.since
            elif settled is not None:
                since = settled.since
            else:
                since = now
            # points of tenants that went away are dropped once stale
            self._waited = {k: v for k, v in self._waited.items() if now - v.since <= self.max_age}
            self._waited[snap.tenant_id] = Waited(snap, index, since)

    def settled(self, snap: Snapshot, now: float, whole: bool) -> None:
        """A pass of ``snap`` went through: ``whole``, or resumed from a whole one (whose age it keeps)."""
        with self._lock:
            found = self._waited.get(snap.tenant_id)
            since = found.since if not whole and found is not None and found.snap == snap else now
            self._settled = {k: v for k, v in self._settled.items() if now - v.since <= self.max_age}
            self._settled[snap.tenant_id] = Settled(snap, since)

    def forget(self, tenant_id: str) -> None:
        """The resume point only (a run went through)."""
        with self._lock:
            self._waited.pop(tenant_id, None)

    def drop(self, tenant_id: str) -> None:
        """Everything (a run failed, the tenant was torn down): the next run is a whole pass."""
        with self._lock:
            self._waited.pop(tenant_id, None)
            self._settled.pop(tenant_id, None)
