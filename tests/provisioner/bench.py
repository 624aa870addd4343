"""Provisioner benchmark: EDC provision request -> callback received, on the local stack.

Goal: <= 2 s warm. A callback is sent only once the tenant API answers the handed-out token through the ingress
(ready means working), so a new tenant's time includes its API pods starting. Prints the median of new tenants
(namespace, MinIO user, every object, the API answering) and of further contracts of an existing tenant, each as a
ratio of the goal. ``python -m tests.provisioner.bench``.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from devstack.stack.launcher import ensure_stack
from provisioner.app import build_services, create_app
from provisioner.infra import db
from tests.provisioner.helpers import stack_settings
from tests.provisioner.servers import EdcStub, ThreadedServer, wait_for
from tests.support.edc import cleanup, edc_request, new_consumer, post

GOAL_SECONDS = 2.0
ROUNDS = 5


def _one(url: str, stub: EdcStub, edc_url: str, consumer: str, asset: str = "dummy") -> float:
    body = edc_request(asset=asset, consumer=consumer, callback=f"{edc_url}/management/callback")
    stub.register(body["transferProcessId"], consumer, asset)
    started = time.monotonic()
    response = post(url, body)
    assert response.status_code == 201, response.text
    call = wait_for(lambda: stub.provisions(body["transferProcessId"]), 60, interval=0.01, what="callback")[0]
    return call.at - started


def run() -> None:
    stack = ensure_stack()
    stub = EdcStub()
    with tempfile.TemporaryDirectory() as tmp, ThreadedServer(stub.app()) as edc:
        settings = stack_settings(stack, f"sqlite:///{Path(tmp) / 'bench.db'}", edc.url)
        svc = build_services(settings)
        db.migrate(svc.engine)
        try:
            with ThreadedServer(create_app(settings, services=svc)) as server:
                _one(server.url, stub, edc.url, new_consumer())  # warm-up
                fresh = [_one(server.url, stub, edc.url, new_consumer()) for _ in range(ROUNDS)]
                consumer = new_consumer()
                _one(server.url, stub, edc.url, consumer)
                existing = [
                    _one(server.url, stub, edc.url, consumer, asset=("input-dummy", "dummy")[i % 2])
                    for i in range(ROUNDS)
                ]
        finally:
            cleanup(svc)
            svc.close()
    for label, samples in (("new tenant", fresh), ("existing tenant", existing)):
        median = statistics.median(samples)
        print(
            f"provisioner: provision request -> callback, {label}: median {median:.2f} s "
            f"(max {max(samples):.2f} s, n={len(samples)}); goal <= {GOAL_SECONDS:.1f} s: "
            f"ratio {median / GOAL_SECONDS:.2f}"
        )


if __name__ == "__main__":
    run()
