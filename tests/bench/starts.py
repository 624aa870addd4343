"""Job starts through the consumer API against Argo Server's own create, in one run on the same stack.

Figures beside their goals (issue #15):
- start overhead: API p50 minus Argo Server create p50, one at a time and with 20 concurrent (goal ≤ 10 ms);
- starts per second at concurrency 20: one API instance over Argo Server's own rate (goal ≥ 0.5x), and two API
  replicas (sharing the start lock through a Lease) over one (goal ≥ 1.8x);
- 100 no-op jobs started and finished: through the API over straight in Argo (goal ≤ 1.1x).

While starts are timed, the workflow-controller is paused (SIGSTOP), so the pods of the jobs just created do not
take the two cores from the calls being measured; each API instance is its own process. ``python -m tests.bench
starts``; ``WML_BENCH_JOBS`` changes the 100.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
from kubernetes import client as k8s

from api.settings import StartLockMode
from devstack.stack import kube
from devstack.stack.launcher import StackInfo, ensure_stack, stack_status
from templates import new_job_id, parse_document
from templates.jobs import job_workflow
from tests.api.tenant import ApiTenant, api_tenant
from tests.bench.api import _env_of, _serve_process

NOOP = parse_document(
    {"name": "noop", "worker": {"image": "imlahso/dummy-job", "command": ["/bin/true"], "outputDir": "/output"}}
)
JOBS = int(os.environ.get("WML_BENCH_JOBS", "100"))
CONCURRENCY = 20
UNLOADED = 15
ROUNDS = 3  # the concurrent phases alternate this often; medians are printed (the 2-core stack is noisy)


@contextlib.contextmanager
def controller_paused() -> Iterator[None]:
    pid = stack_status()["workflow-controller"]["pid"]
    assert isinstance(pid, int)
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def _delete_all(stack: StackInfo, namespace: str) -> None:
    api = kube.api_client(stack.kubeconfig)
    k8s.CustomObjectsApi(api).delete_collection_namespaced_custom_object(
        "argoproj.io", "v1alpha1", namespace, "workflows"
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        left = k8s.CustomObjectsApi(api).list_namespaced_custom_object(
            "argoproj.io", "v1alpha1", namespace, "workflows"
        )
        if not left["items"]:
            return
        time.sleep(0.5)


async def _fire(n: int, concurrency: int, call: Callable[[int], Awaitable[None]]) -> tuple[list[float], float]:
    """``n`` calls, ``concurrency`` at a time; (each call's seconds, the wall time of all)."""
    times: list[float] = []
    queue = iter(range(n))

    async def worker() -> None:
        for i in queue:
            started = time.perf_counter()
            await call(i)
            times.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return times, time.perf_counter() - started


def _argo_call(http: httpx.AsyncClient, tenant: ApiTenant, manifests: list[dict[str, Any]]) -> Any:
    settings = tenant.settings
    url = f"{settings.argo_server_url}/api/v1/workflows/{settings.namespace}"
    token = settings.argo_token.get_secret_value() if settings.argo_token else ""

    async def call(i: int) -> None:
        response = await http.post(url, json={"workflow": manifests[i]}, headers={"Authorization": f"Bearer {token}"})
        response.raise_for_status()

    return call


def _api_call(http: httpx.AsyncClient, urls: list[str], token: str) -> Any:
    async def call(i: int) -> None:
        response = await http.post(
            f"{urls[i % len(urls)]}/v1/jobs", json={"asset": "noop"}, headers={"Authorization": f"Bearer {token}"}
        )
        if response.status_code != 201:
            raise RuntimeError(f"start answered {response.status_code}: {response.text[:300]}")

    return call


def _manifests(tenant: ApiTenant, n: int) -> list[dict[str, Any]]:
    return [job_workflow(NOOP, namespace=tenant.namespace, job_id=new_job_id(), tenant=tenant.name) for _ in range(n)]


async def _all_finished(http: httpx.AsyncClient, tenant: ApiTenant, n: int, timeout: float = 1800) -> None:
    settings = tenant.settings
    token = settings.argo_token.get_secret_value() if settings.argo_token else ""
    url = f"{settings.argo_server_url}/api/v1/workflows/{settings.namespace}"
    params = {"listOptions.labelSelector": "workflows.argoproj.io/completed=true", "fields": "items.metadata.name"}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = await http.get(url, params=params, headers={"Authorization": f"Bearer {token}"})
        if len(response.json().get("items") or []) >= n:
            return
        await asyncio.sleep(0.5)
    raise TimeoutError(f"{n} jobs did not finish in {timeout}s")


def _p50_ms(times: list[float]) -> float:
    return statistics.median(times) * 1000


def run() -> dict[str, float]:
    stack = ensure_stack()
    with api_tenant(stack, "starts", (NOOP,), quota_concurrent_jobs=100_000) as tenant:
        one, url1 = _serve_process(_env_of(tenant.settings))
        lease_env = _env_of(tenant.settings.model_copy(update={"start_lock": StartLockMode.LEASE}))
        two_a, url2a = _serve_process(lease_env)
        two_b, url2b = _serve_process(lease_env)
        try:
            return asyncio.run(_measure(stack, tenant, url1, [url2a, url2b]))
        finally:
            for proc in (one, two_a, two_b):
                proc.terminate()
                proc.wait(timeout=10)


async def _measure(stack: StackInfo, tenant: ApiTenant, url1: str, urls2: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=64)) as http:
        with controller_paused():
            # One at a time, alternating, so that both see the same stack.
            argo_single, api_single = [], []
            manifests = _manifests(tenant, UNLOADED)
            argo, api = _argo_call(http, tenant, manifests), _api_call(http, [url1], tenant.token)
            for i in range(UNLOADED):
                argo_single += (await _fire(1, 1, lambda _, i=i: argo(i)))[0]
                api_single += (await _fire(1, 1, api))[0]
            _delete_all(stack, tenant.namespace)
            argo_times: list[float] = []
            api_times: list[float] = []
            rates: dict[str, list[float]] = {"argo": [], "api": [], "api2": []}
            for _ in range(ROUNDS):
                times, wall = await _fire(JOBS, CONCURRENCY, _argo_call(http, tenant, _manifests(tenant, JOBS)))
                argo_times += times
                rates["argo"].append(JOBS / wall)
                _delete_all(stack, tenant.namespace)
                times, wall = await _fire(JOBS, CONCURRENCY, _api_call(http, [url1], tenant.token))
                api_times += times
                rates["api"].append(JOBS / wall)
                _delete_all(stack, tenant.namespace)
                _, wall = await _fire(JOBS, CONCURRENCY, _api_call(http, urls2, tenant.token))
                rates["api2"].append(JOBS / wall)
                _delete_all(stack, tenant.namespace)
        out["overhead_unloaded_ms"] = _p50_ms(api_single) - _p50_ms(argo_single)
        out["overhead_c20_ms"] = _p50_ms(api_times) - _p50_ms(argo_times)
        out["argo_rate"], out["api_rate"], out["api2_rate"] = (
            statistics.median(rates[k]) for k in ("argo", "api", "api2")
        )
        print(
            f"start overhead, one at a time: API p50 {_p50_ms(api_single):.1f} ms, Argo create p50 "
            f"{_p50_ms(argo_single):.1f} ms, overhead {out['overhead_unloaded_ms']:.1f} ms   (goal ≤ 10 ms)"
        )
        print(
            f"start overhead, {CONCURRENCY} concurrent: API p50 {_p50_ms(api_times):.1f} ms, Argo create p50 "
            f"{_p50_ms(argo_times):.1f} ms, overhead {out['overhead_c20_ms']:.1f} ms   (goal ≤ 10 ms)"
        )
        print(
            f"starts/s at concurrency {CONCURRENCY} (median of {ROUNDS} rounds of {JOBS}): Argo Server "
            f"{out['argo_rate']:.0f}/s, one API instance "
            f"{out['api_rate']:.0f}/s: ratio {out['api_rate'] / out['argo_rate']:.2f}x   (goal ≥ 0.5x)"
        )
        print(
            f"starts/s, two API replicas (Lease start lock): {out['api2_rate']:.0f}/s: ratio "
            f"{out['api2_rate'] / out['api_rate']:.2f}x one   (goal ≥ 1.8x)"
        )
        # End to end, with the controller running: the time until all JOBS no-op jobs have finished.
        started = time.perf_counter()
        await _fire(JOBS, CONCURRENCY, _argo_call(http, tenant, _manifests(tenant, JOBS)))
        await _all_finished(http, tenant, JOBS)
        argo_e2e = time.perf_counter() - started
        _delete_all(stack, tenant.namespace)
        started = time.perf_counter()
        await _fire(JOBS, CONCURRENCY, _api_call(http, [url1], tenant.token))
        await _all_finished(http, tenant, JOBS)
        api_e2e = time.perf_counter() - started
        _delete_all(stack, tenant.namespace)
        out["e2e_ratio"] = api_e2e / argo_e2e
        print(
            f"{JOBS} no-op jobs finished: straight in Argo {argo_e2e:.1f} s, through the API {api_e2e:.1f} s: ratio "
            f"{out['e2e_ratio']:.2f}x   (goal ≤ 1.1x)"
        )
    return out
