"""Issue #30 through data plane signaling, in the shipped shape (two API pods): a suspended flow's token is refused
by every pod within 2 s of our answer to the suspend, asked of each pod directly."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

import httpx
import pytest

from provisioner.infra.services import Services
from templates.names import tenant_id_for
from tests.provisioner.servers import EdcStub, wait_for
from tests.provisioner.test_api_pods import _pod_urls, _watch
from tests.provisioner.test_signaling import (  # noqa: F401 (the fixture is used by name)
    address_of,
    dataplane,
    flow_message,
    start_message,
)
from tests.support.edc import new_consumer

pytestmark = pytest.mark.stack


def test_a_suspended_flows_token_is_refused_by_every_replica(
    dataplane: Callable[..., tuple[str, Services]],  # noqa: F811
    edc: tuple[EdcStub, str],
) -> None:
    stub, edc_url = edc
    base, svc = dataplane(api_replicas=2)
    process, consumer = str(uuid.uuid4()), new_consumer()
    tenant = tenant_id_for(consumer)
    message = start_message(process, consumer, f"{edc_url}/control")
    answer = httpx.post(f"{base}/start", json=message, timeout=60).json()
    if answer["provisioning"]:  # a slow node: delivered by callback, then the start answers
        wait_for(lambda: stub.signals("provisioned", process), 120, what="the provisioned callback")
        answer = httpx.post(f"{base}/start", json=message, timeout=60).json()
    token = address_of(answer)["authorization"]
    namespace = svc.settings.namespace_for(tenant)
    urls: list[str] = wait_for(
        lambda: found if len(found := _pod_urls(svc, namespace)) == 2 else None, 120, what="two API pods"
    )
    for url in urls:  # both pods serve the token before the suspend
        wait_for(
            lambda url=url: (
                httpx.get(f"{url}/v1/assets", headers={"Authorization": f"Bearer {token}"}).status_code == 200
            ),
            60,
            what=f"{url} serving the token",
        )

    stop, seen = threading.Event(), list[tuple[float, str, int]]()
    watcher = threading.Thread(target=_watch, args=(urls, token, stop, seen))
    watcher.start()
    try:
        suspended = httpx.post(f"{base}/{process}/suspend", json=flow_message("DataFlowSuspendMessage"), timeout=60)
        answered = time.monotonic()
        assert suspended.status_code == 204, suspended.text
        time.sleep(4)
    finally:
        stop.set()
        watcher.join()
    late = [(round(at - answered, 2), url, status) for at, url, status in seen if at > answered + 2.0 and status != 401]
    assert late == [], late
    assert {url for _, url, status in seen if status == 401} == set(urls)  # each pod said so
