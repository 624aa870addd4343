"""When a tenant API counts as serving its current settings (provisioner.steps.apipods.rolled_out): a new tenant's
endpoint is handed out once its first pod answers; a rolling update waits until no older pod serves."""

from __future__ import annotations

from typing import Any

from provisioner.steps.apipods import rolled_out


def _deployment(generation: int = 1, **status: int) -> dict[str, Any]:
    return {"metadata": {"generation": generation}, "spec": {"replicas": 2}, "status": status}


def test_a_new_tenants_first_available_pod_is_enough() -> None:
    assert rolled_out(_deployment(observedGeneration=1, replicas=2, updatedReplicas=2, availableReplicas=1))
    assert rolled_out(_deployment(observedGeneration=1, replicas=2, updatedReplicas=2, availableReplicas=2))


def test_a_rolling_update_waits_for_every_older_pod_to_go() -> None:
    rolling = _deployment(generation=2, observedGeneration=2, replicas=3, updatedReplicas=1, availableReplicas=2)
    assert not rolled_out(rolling)
    unseen = _deployment(generation=3, observedGeneration=2, replicas=2, updatedReplicas=2, availableReplicas=2)
    assert not rolled_out(unseen)  # the controller has not even seen the change yet


def test_a_deployment_that_never_served_has_nothing_to_wait_for() -> None:
    assert rolled_out(_deployment(observedGeneration=1, replicas=2, updatedReplicas=2))
