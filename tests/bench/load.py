"""Load (issue #16): 30 consumers provisioned at once, each with its two API pods, then 300 dummy jobs spread over
them through their ingress URLs with the concurrent-job quota in force. Nothing may be lost: every job ends
COMPLETE with the right output and a receipt that names it, and no tenant ever runs more jobs than its quota.

Prints tenants per minute, jobs per minute, memory per tenant (its API pods' RSS, its cluster objects) and where
the one-node stack saturates (pods, CPU requests, what pending pods wait for). ``python -m tests.bench load``.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from sqlalchemy import select

from api.client import Client, ClientError
from devstack.stack import host
from devstack.stack.launcher import StackInfo, ensure_stack
from provisioner.app import build_services, create_app
from provisioner.infra import db
from provisioner.infra.models import AuditEvent
from provisioner.infra.services import Services
from templates.names import API
from tests.bench.api_pod import _pids_of
from tests.provisioner.helpers import TENANT_OBJECTS, stack_settings
from tests.provisioner.servers import EdcStub, ThreadedServer, wait_for
from tests.support.edc import cleanup, edc_request, new_consumer, post, tenant_of

CONSUMERS = 30
JOBS = 300
QUOTA = 2
# Workflows Argo runs at once (its controller's `parallelism`), sized to this node: the dummy asks 250m CPU and a
# 2-core node runs about five next to 60 API pods. Without it, 60 admitted jobs' pods wait in kube-scheduler's
# queue, which is not first come first served: a few waited past the dummy's own 10-minute limit (stop 21: 4 of
# 300 with quota 2, 2 of 300 with quota 1, "Step exceeded its deadline"). Argo queues Workflows by creation time
# and starts no pod (and no deadline) until one runs; the API's quota counts them from creation.
PARALLELISM = 5
ENV = b"SOURCE=/etc/os-release\nDESTINATION=/output/result\nSLEEPTIME=1\n"


def _provision_all(url: str, stub: EdcStub, edc_url: str) -> tuple[list[tuple[str, str, str]], list[float]]:
    """Every consumer's (tenant, endpoint, token), and the seconds from the burst to each callback."""
    bodies = []
    for _ in range(CONSUMERS):
        consumer = new_consumer()
        body = edc_request(asset="dummy", consumer=consumer, callback=f"{edc_url}/management/callback")
        stub.register(body["transferProcessId"], consumer, "dummy")
        bodies.append((consumer, body))
    started = time.monotonic()
    with ThreadPoolExecutor(CONSUMERS) as pool:
        answers = list(pool.map(lambda cb: post(url, cb[1]), bodies))
    assert all(a.status_code == 201 for a in answers), [a.text for a in answers if a.status_code != 201][:3]
    calls = [
        wait_for(lambda tp=b["transferProcessId"]: stub.provisions(tp), 900, interval=0.5, what="callback")[0]
        for _, b in bodies
    ]
    took = sorted(c.at - started for c in calls)
    out = []
    for (consumer, _), call in zip(bodies, calls, strict=True):
        endpoint = call.body["contentDataAddress"]["properties"]["https://w3id.org/edc/v0.0.1/ns/baseUrl"]
        out.append((tenant_of(consumer), endpoint, call.body["apiKeyJwt"]))
    return out, took


@contextmanager
def argo_parallelism(stack: StackInfo, limit: int) -> Iterator[None]:
    """Argo's controller runs at most ``limit`` Workflows at once while the block runs (it reloads its ConfigMap)."""
    core = k8s.CoreV1Api(k8s_config.new_client_from_config(str(stack.kubeconfig)))
    name, namespace = "workflow-controller-configmap", "argo"
    core.patch_namespaced_config_map(name, namespace, {"data": {"parallelism": str(limit)}})
    try:
        yield
    finally:
        core.patch_namespaced_config_map(name, namespace, {"data": {"parallelism": None}})


def run() -> None:
    stack = ensure_stack()
    stub = EdcStub()
    with tempfile.TemporaryDirectory() as tmp, ThreadedServer(stub.app()) as edc:
        settings = stack_settings(
            stack,
            f"sqlite:///{Path(tmp) / 'load.db'}",
            edc.url,
            quota_concurrent_jobs=QUOTA,
            worker_threads=8,
            api_replicas=2,  # the production shape
        )
        svc = build_services(settings)
        db.migrate(svc.engine)
        try:
            with ThreadedServer(create_app(settings, services=svc)) as server, argo_parallelism(stack, PARALLELISM):
                _load(svc, server.url, stub, edc.url)
        finally:
            cleanup(svc)
            svc.close()


def _load(svc: Services, url: str, stub: EdcStub, edc_url: str) -> None:
    """Prints each figure as soon as it is known (a failure later keeps what was measured)."""
    consumers, times = _provision_all(url, stub, edc_url)
    took = times[-1]
    slots = svc.settings.api_start_concurrency
    lines = _Printed()
    lines.extend(
        [
            f"load: {CONSUMERS} consumers at once ({svc.settings.api_replicas} API pods each, start slots {slots}), "
            f"all handed out working in {took:.1f} s: {CONSUMERS / took * 60:.1f} tenants/min; callbacks after "
            f"first {times[0]:.1f} s, median {statistics.median(times):.1f} s, last {took:.1f} s"
        ]
    )
    failed = [t for t in (tenants_attempts(svc, c[0]) for c in consumers) if t]
    lines.append(f"load: attempts spent by tenants (failed steps): {sum(failed)} over {len(failed)} tenants")

    # memory per tenant: both API pods' RSS, and the size of its cluster objects
    rss = [sum(host.rss_mib(pid) for pid in _pids_of(tenant)) for tenant, _, _ in consumers]
    ns = svc.settings.namespace_for(consumers[0][0])
    objects = [o for v, k, n in TENANT_OBJECTS if (o := svc.kube.get(v, k, n, ns)) is not None]
    size = sum(len(json.dumps(o)) for o in objects) / 1024
    lines.append(
        f"load: per tenant: API pods' RSS median {statistics.median(rss):.0f} MiB (two pods), "
        f"{len(objects)} cluster objects of {size:.0f} KiB (+ its WorkflowTemplates)"
    )

    # 300 jobs, spread evenly; each consumer starts its share as fast as its quota lets it
    peak: dict[str, int] = {}
    done_flag = threading.Event()

    def watch() -> None:
        while not done_flag.is_set():
            for tenant, _, _ in consumers:
                namespace = svc.settings.namespace_for(tenant)
                # the pods of jobs that have not finished (the provisioner's client knows no Workflow kind)
                running = {
                    p["metadata"].get("labels", {}).get("workflows.argoproj.io/workflow")
                    for p in svc.kube.list("v1", "Pod", namespace, "workflows.argoproj.io/workflow")
                    if (p.get("status") or {}).get("phase") in ("Pending", "Running")
                }
                peak[tenant] = max(peak.get(tenant, 0), len(running))
            time.sleep(0.5)

    def consumer_jobs(item: tuple[str, str, str]) -> list[tuple[str, str]]:
        _, endpoint, token = item
        results = []
        with Client(endpoint, token) as client:
            client.upload_bytes("dummy", "env", ENV)
            pending = JOBS // CONSUMERS
            active: list[str] = []
            while pending or active:
                while pending and len(active) < QUOTA:
                    try:
                        active.append(str(client.start("dummy")["id"]))
                        pending -= 1
                    except ClientError as exc:
                        if exc.status != 429:
                            raise
                        break
                for job in list(active):
                    state = client.job(job)["state"]
                    if state in ("COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED"):
                        active.remove(job)
                        body = client.http.get(f"/v1/jobs/{job}/outputs/result").content
                        results.append((state, hashlib.sha256(body).hexdigest()))
                        if state != "COMPLETE":
                            print(f"load: job {job} ended {state}: {client.job(job).get('message')}", flush=True)
                        receipt = client.receipt(job)
                        assert receipt["outputs"]["result"] == hashlib.sha256(body).hexdigest(), receipt
                time.sleep(0.5)
        return results

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    started = time.monotonic()
    with ThreadPoolExecutor(CONSUMERS) as pool:
        outcomes = [r for rs in pool.map(consumer_jobs, consumers) for r in rs]
    took = time.monotonic() - started
    done_flag.set()
    states = {s: sum(1 for o in outcomes if o[0] == s) for s in {o[0] for o in outcomes}}
    digests = {o[1] for o in outcomes}
    print(f"load: {JOBS} jobs ended: {states}; most running at once per tenant {max(peak.values())}", flush=True)
    print("load: " + _saturation(svc), flush=True)
    assert len(outcomes) == JOBS and states == {"COMPLETE": JOBS} and len(digests) == 1, (states, len(digests))
    assert max(peak.values()) <= QUOTA, peak
    lines.append(
        f"load: {JOBS} jobs over {CONSUMERS} tenants in {took:.0f} s ({JOBS / took * 60:.0f} jobs/min): "
        f"all COMPLETE with the same output and a receipt naming it; most running at once per tenant "
        f"{max(peak.values())} (quota {QUOTA}; Argo runs {PARALLELISM} at once)"
    )


class _Printed(list[str]):
    def append(self, line: str) -> None:
        print(line, flush=True)
        super().append(line)

    def extend(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.append(line)


def tenants_attempts(svc: Services, tenant_id: str) -> int:
    """Failed steps the tenant went through (its audit's step_failed events): slow starts must spend none."""
    with svc.sessions() as session:
        return len(
            session.scalars(
                select(AuditEvent).where(AuditEvent.tenant_id == tenant_id, AuditEvent.event == "step_failed")
            ).all()
        )


def _saturation(svc: Services) -> str:
    node = svc.kube.list("v1", "Node")[0]
    allocatable = node["status"]["allocatable"]
    pods = [p for p in svc.kube.list("v1", "Pod") if (p.get("status") or {}).get("phase") in ("Pending", "Running")]
    cpu_m = 0
    for pod in pods:
        for c in pod["spec"]["containers"]:
            request = (c.get("resources") or {}).get("requests", {}).get("cpu", "0")
            cpu_m += int(request[:-1]) if request.endswith("m") else int(float(request) * 1000)
    waiting = sorted(
        {
            cond.get("message", "")[:80]
            for p in pods
            for cond in (p.get("status") or {}).get("conditions") or []
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False"
        }
    )
    api_pods = [p for p in pods if p["metadata"].get("labels", {}).get("app.kubernetes.io/name") == API]
    return (
        f"node: {len(pods)} pods of {allocatable['pods']} allowed ({len(api_pods)} tenant API pods), "
        f"CPU requested {cpu_m}m of {allocatable['cpu']}"
        + (f"; pending pods wait for: {waiting}" if waiting else "; no pod waits for room")
    )


if __name__ == "__main__":
    run()
