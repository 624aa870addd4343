"""A burst of new consumers starts its tenant APIs in waves (``api_start_concurrency``), not all at once: with one
slot, each new tenant's API Deployment is created only once the one before serves, and every tenant ends ready.
The slot is counted cluster-wide: a young tenant namespace another test left may delay these (hence the timeouts)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from itertools import pairwise
from typing import Any

import pytest

from provisioner.infra.services import Services
from templates.names import API
from tests.provisioner.servers import EdcStub, wait_for
from tests.provisioner.test_lifecycle import provision
from tests.support.edc import new_consumer, tenant_of

pytestmark = pytest.mark.stack


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"api_start_concurrency": 1}


def _at(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def test_new_tenant_apis_start_one_slot_at_a_time(
    provisioner: str, services: Services, edc: tuple[EdcStub, str]
) -> None:
    stub, _ = edc
    consumers = [new_consumer() for _ in range(3)]
    with ThreadPoolExecutor(len(consumers)) as pool:
        bodies = list(pool.map(lambda c: provision(provisioner, edc, c), consumers))
    for body in bodies:
        wait_for(lambda tp=body["transferProcessId"]: stub.provisions(tp), 300, what="callback")

    deployments = []
    for consumer in consumers:
        namespace = services.settings.namespace_for(tenant_of(consumer))
        deployment = services.kube.get("apps/v1", "Deployment", API, namespace)
        assert deployment is not None
        deployments.append(deployment)
    deployments.sort(key=lambda d: _at(d["metadata"]["creationTimestamp"]))
    for before, after in pairwise(deployments):
        available = next(c for c in before["status"]["conditions"] if c["type"] == "Available")
        assert available["status"] == "True"
        # one slot: the next API was created only once the one before served (timestamps are whole seconds)
        assert _at(after["metadata"]["creationTimestamp"]) >= _at(available["lastTransitionTime"]), (
            after["metadata"]["namespace"],
            after["metadata"]["creationTimestamp"],
            available["lastTransitionTime"],
        )
