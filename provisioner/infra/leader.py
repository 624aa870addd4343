"""Leader election over a Kubernetes ``Lease``, as controllers do it: one replica runs the reconciler.

Every replica serves requests (their work is serialised per tenant by row claims, :mod:`provisioner.core.store`); only
the leader looks for due work (the reconciler) and sweeps storage. The leader renews the Lease every third of its
duration; a replica that cannot renew (the API server unreachable, a conflict it lost) stops leading at once, and
another takes over once ``leaseDurationSeconds`` have passed since the last renewal. Writes are conditional on the
Lease's ``resourceVersion``, so two replicas can never both believe they took it. Time comes from the injected clock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from provisioner.infra.kube import Kube, KubeError

log = logging.getLogger(__name__)
LEASE = ("coordination.k8s.io/v1", "Lease")


def _micro(at: datetime) -> str:
    """Kubernetes' MicroTime."""
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class LeaderElector:
    def __init__(
        self, kube: Kube, namespace: str, name: str, identity: str, seconds: int, clock: Callable[[], datetime]
    ) -> None:
        self.kube, self.namespace, self.name = kube, namespace, name
        self.identity, self.seconds, self.clock = identity, seconds, clock
        self.leading = False

    def _spec(self, now: datetime, acquired: str | None, transitions: int) -> dict[str, Any]:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.seconds,
            "acquireTime": acquired or _micro(now),
            "renewTime": _micro(now),
            "leaseTransitions": transitions,
        }

    def step(self) -> bool:
        """Acquire or renew; returns whether this replica leads until the next step."""
        was = self.leading
        try:
            self.leading = self._step()
        except KubeError as exc:
            log.warning("leader election: %s", exc)
            self.leading = False
        if self.leading != was:
            log.info("%s leadership of %s/%s", "took" if self.leading else "lost", self.namespace, self.name)
        return self.leading

    def _step(self) -> bool:
        now = self.clock()
        lease = self.kube.get(*LEASE, self.name, self.namespace)
        if lease is None:
            body = {
                "apiVersion": LEASE[0],
                "kind": LEASE[1],
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(now, None, 0),
            }
            try:
                self.kube.create(body)
            except KubeError as exc:
                if exc.status == 409:  # another replica created it first
                    return False
                raise
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        renewed = _parse(spec.get("renewTime")) or _parse(spec.get("acquireTime"))
        duration = int(spec.get("leaseDurationSeconds") or self.seconds)
        expired = renewed is None or now > renewed + timedelta(seconds=duration)
        if holder and holder != self.identity and not expired:
            return False
        transitions = int(spec.get("leaseTransitions") or 0) + (0 if holder == self.identity else 1)
        acquired = spec.get("acquireTime") if holder == self.identity else None
        lease["spec"] = self._spec(now, acquired, transitions)
        try:
            self.kube.replace(lease)  # conditional on the resourceVersion we read
        except KubeError as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def release(self) -> None:
        """On a clean shutdown: hand over at once instead of after the lease's duration."""
        if not self.leading:
            return
        try:
            lease = self.kube.get(*LEASE, self.name, self.namespace)
            if lease and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                lease["spec"]["holderIdentity"] = None
                lease["spec"]["renewTime"] = None
                self.kube.replace(lease)
        except KubeError as exc:
            log.warning("leader election: release failed: %s", exc)
        self.leading = False
