"""No single tenant API pod is an outage: a provisioned tenant runs two API pods behind a PodDisruptionBudget, is
handed out only once it answers at its ingress URL, and a consumer whose retrying client keeps working while one
pod is killed (``--grace-period=0 --force``) sees no error at all."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest
from kubernetes import client as k8s

from api.client import Client, ClientError
from provisioner.infra.services import Services
from templates.names import API
from tests.provisioner.servers import EdcStub, wait_for
from tests.provisioner.test_lifecycle import provision
from tests.support.edc import new_consumer, post, tenant_of

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


def _pod_urls(services: Services, namespace: str) -> list[str]:
    """Each API pod's own address, reached from the node (the ingress would pick one of them at random)."""
    pods = services.kube.list("v1", "Pod", namespace, f"app.kubernetes.io/name={API}")
    port = services.settings.api_port
    return [f"http://{p['status']['podIP']}:{port}" for p in pods if p["status"].get("podIP")]


def _watch(urls: list[str], token: str, until: threading.Event, seen: list[tuple[float, str, int]]) -> None:
    """Ask every pod with ``token`` ten times a second: (when, pod, status)."""
    with httpx.Client(timeout=5) as http:
        while not until.is_set():
            for url in urls:
                asked = time.monotonic()  # when the request left: a slow 200 asked before a revocation is no late one
                try:
                    status = http.get(f"{url}/v1/assets", headers={"Authorization": f"Bearer {token}"}).status_code
                except httpx.HTTPError:
                    status = 0  # the pod is gone (the last grant's teardown)
                seen.append((asked, url, status))
            time.sleep(0.1)


def test_a_revoked_token_dies_on_every_replica_before_the_connector_hears_of_it(
    provisioner: str, services: Services, edc: tuple[EdcStub, str]
) -> None:
    """Issue #30: two grants of one consumer, two API pods. Ending a grant revokes its token on both pods before
    the deprovision callback reaches the connector, the other grant's token keeps working; ending the last one
    revokes its token on both pods within the re-read period of the answer (401, never a 5xx), then the tenant
    goes."""
    stub, _ = edc
    consumer = new_consumer()
    first = provision(provisioner, edc, consumer)
    [call1] = wait_for(lambda: stub.provisions(first["transferProcessId"]), 120, what="first callback")
    second = provision(provisioner, edc, consumer, asset="input-dummy")
    [call2] = wait_for(lambda: stub.provisions(second["transferProcessId"]), 120, what="second callback")
    token1, token2 = call1.body["apiKeyJwt"], call2.body["apiKeyJwt"]
    namespace = services.settings.namespace_for(tenant_of(consumer))
    urls: list[str] = wait_for(
        lambda: found if len(found := _pod_urls(services, namespace)) == 2 else None, 120, what="two pods"
    )
    refresh = services.settings.api_token_refresh_seconds

    # the non-last grant: its token refused on both pods by the time the connector hears it ended
    stop, seen = threading.Event(), list[tuple[float, str, int]]()
    watcher = threading.Thread(target=_watch, args=(urls, token2, stop, seen))
    watcher.start()
    try:
        stub.end(second["transferProcessId"])
        assert post(provisioner, {**second, "type": "deprovision"}).status_code == 200
        wait_for(lambda: stub.deprovisions(second["transferProcessId"]), 60, what="deprovision callback")
        heard = time.monotonic()
        time.sleep(refresh + 1)
    finally:
        stop.set()
        watcher.join()
    assert {url for _, url, _ in seen} == set(urls)
    late = [(round(at - heard, 2), url, status) for at, url, status in seen if at >= heard and status != 401]
    assert late == [], late
    for url in urls:  # the other grant's token still works on both
        assert httpx.get(f"{url}/v1/assets", headers={"Authorization": f"Bearer {token1}"}).status_code == 200

    # the last grant: refused on both pods within the re-read period of the answer, never a 5xx
    stop, seen = threading.Event(), list[tuple[float, str, int]]()
    watcher = threading.Thread(target=_watch, args=(urls, token1, stop, seen))
    watcher.start()
    try:
        stub.end(first["transferProcessId"])
        assert post(provisioner, {**first, "type": "deprovision"}).status_code == 200
        answered = time.monotonic()
        wait_for(lambda: stub.deprovisions(first["transferProcessId"]), 120, what="last deprovision callback")
    finally:
        stop.set()
        watcher.join()
    served = [(round(at - answered, 2), url) for at, url, status in seen if status == 200]
    assert all(at <= refresh + 1.0 for at, _ in served), served
    assert all(status in (0, 200, 401) for _, _, status in seen), [s for s in seen if s[2] not in (0, 200, 401)]
    assert {url for _, url, status in seen if status == 401} == set(urls)  # each pod said 401 before it went
