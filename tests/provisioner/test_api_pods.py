"""No single tenant API pod is an outage: a provisioned tenant runs two API pods behind a PodDisruptionBudget, is
handed out only once it answers at its ingress URL, and a consumer whose retrying client keeps working while one
pod is killed (``--grace-period=0 --force``) sees no error at all."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from kubernetes import client as k8s

from api.client import Client, ClientError
from provisioner.infra.services import Services
from templates.names import API
from tests.provisioner.servers import EdcStub, wait_for
from tests.provisioner.test_lifecycle import provision
from tests.support.edc import new_consumer, tenant_of

pytestmark = pytest.mark.stack


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """The tenant shape of production: two API pods (the suite's default is one)."""
    return {"api_replicas": 2}


def test_one_api_pod_killed_costs_a_consumer_nothing(
    provisioner: str, services: Services, edc: tuple[EdcStub, str]
) -> None:
    stub, _ = edc
    consumer = new_consumer()
    body = provision(provisioner, edc, consumer)
    [call] = wait_for(lambda: stub.provisions(body["transferProcessId"]), 120, what="callback")
    tenant = tenant_of(consumer)
    namespace = services.settings.namespace_for(tenant)
    url, token = services.settings.api_url_for(tenant), call.body["apiKeyJwt"]
    selector = f"app.kubernetes.io/name={API}"

    # handed out means working: the very first request through the ingress succeeds
    with Client(url, token) as client:
        assert "dummy" in {a["name"] for a in client.assets()}
    pdb = services.kube.get("policy/v1", "PodDisruptionBudget", API, namespace)
    assert pdb is not None and pdb["spec"]["maxUnavailable"] == 1

    def running() -> list[dict[str, object]] | None:
        pods = services.kube.list("v1", "Pod", namespace, selector)
        ready = [p for p in pods if p["status"].get("phase") == "Running"]
        return ready if len(ready) == 2 else None

    pods = wait_for(running, 120, what="two API pods")

    errors: list[str] = []
    answered = 0
    slowest = 0.0
    stop = threading.Event()

    def consumer_reads() -> None:
        nonlocal answered, slowest
        with Client(url, token) as client:
            while not stop.is_set():
                began = time.monotonic()
                try:
                    client.assets()
                    answered += 1
                except (ClientError, OSError) as exc:
                    errors.append(repr(exc))
                slowest = max(slowest, time.monotonic() - began)
                time.sleep(0.05)

    reader = threading.Thread(target=consumer_reads)
    reader.start()
    try:
        time.sleep(2)
        victim = str(pods[0]["metadata"]["name"])  # type: ignore[index]
        k8s.CoreV1Api(services.kube.api).delete_namespaced_pod(victim, namespace, grace_period_seconds=0)
        # its replacement comes up and serves, while the reads go on
        wait_for(
            lambda: victim not in {p["metadata"]["name"] for p in services.kube.list("v1", "Pod", namespace, selector)},
            120,
            what="the killed pod gone",
        )
        time.sleep(10)
    finally:
        stop.set()
        reader.join(timeout=120)
    assert errors == [] and answered > 50, (errors[:5], answered, f"slowest read {slowest:.2f}s")
