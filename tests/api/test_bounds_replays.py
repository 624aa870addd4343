"""Issue #26's attacks replayed on the real stack at the sizes they were first tried with: a 300 MB single-line log
read five times, a 2 GiB sparse output read by five concurrent readers over two API replicas, and 20 parallel
starts each snapshotting a 3 MiB input against a 16 MiB storage quota (one replica and two). Each is stopped at its
bound with a clear state; the API keeps answering in bounded memory; another tenant's job completes meanwhile.

The API serves in this process (tests/api/tenant.py), so its memory is this process's: a sampler watches its
resident size while the attack runs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.settings import StartLockMode
from devstack.servers import serve
from devstack.stack import kube
from devstack.stack.launcher import StackInfo
from devstack.wait import wait_for
from tests.api.tenant import ApiTenant, api_tenant
from tests.support.attacks import LOG_BYTES, QUIET, ROOMY, SPARSE, long_line, read_all, zip_of
from tests.support.memory import PeakRss
from tests.support.pods import wait_pods_gone, wait_settled
from tests.support.probe import PROBE

pytestmark = pytest.mark.stack

MiB = 1024**2
# Memory this process may grow by while the API serves an attack (the API's own working set plus the client's
# buffers): far below any of the attacks' sizes, so holding one of them whole fails the test.
RSS_GROWTH_MAX = 160 * MiB


@contextlib.contextmanager
def another_tenants_job(tenant: ApiTenant) -> Iterator[None]:
    """A job of another tenant that runs while the attack does, and must complete."""
    with tenant.client() as client:
        client.upload_bytes("dummy", "env", b"SOURCE=/etc/os-release\nDESTINATION=/output/result\nSLEEPTIME=10\n")
        job = client.start("dummy")["id"]
        yield
        assert client.wait(job, timeout=300)["state"] == "COMPLETE"


@pytest.fixture(scope="module")
def logs_tenant(stack: StackInfo) -> Iterator[ApiTenant]:
    with api_tenant(stack, "logs", extra_assets=(PROBE, ROOMY)) as value:
        yield value


@pytest.mark.parametrize(
    ("asset", "size"),
    [("probe", LOG_BYTES), ("roomy", LOG_BYTES), ("roomy", 9 * MiB)],
    ids=["300MB-evicted", "300MB-rotated", "9MiB-cut"],
)
def test_a_single_line_log_is_stopped_at_a_bound_and_read_in_bounded_memory(
    logs_tenant: ApiTenant, tenant: ApiTenant, stack: StackInfo, asset: str, size: int
) -> None:
    """300 MB from probe (64Mi of ephemeral storage, which the container's log counts against): the kubelet stops
    the worker, and the job says why. 300 MB from roomy (512Mi): the job completes; the node keeps at most
    containerLogMaxSize of the log (the local stack: 10Mi, the kubelet rotates), the API stores at most the log cap of
    that. 9 MiB (above the 8 MiB cap, below rotation): stored cut at the cap, with a marker, and the cut in the
    job's state and receipt. Each log is read 5 times live and 5 times stored, in bounded memory."""
    t, cap = logs_tenant, logs_tenant.settings.log_max_bytes
    disk_before = shutil.disk_usage(stack.state_dir).free
    with another_tenants_job(tenant), t.client() as client, PeakRss() as rss:
        client.upload_bytes(asset, "entrypoint.sh", long_line(size).encode())
        job = client.start(asset)["id"]
        wait_for(lambda: client.job(job)["state"] != "QUEUED", 120, what="the job running")
        time.sleep(8)  # the long line is being written: the live reads meet it
        live = [read_all(t.url, t.token, f"/v1/jobs/{job}/logs") for _ in range(5)]
        done = client.wait(job, timeout=300)
        wait_settled(kube.api_client(stack.kubeconfig), t.namespace, job)
        stored = [read_all(t.url, t.token, f"/v1/jobs/{job}/logs") for _ in range(5)]
        view, receipt = client.job(job), client.receipt(job)
        assert client.assets()  # the API answered throughout
    assert all(status == 200 and n <= size + 64 * 1024 for status, n, _ in live), live
    assert all(status == 200 and n <= cap + 200 for status, n, _ in stored), stored
    if asset == "probe":
        assert done["state"] == "EXECUTOR_ERROR" and "ephemeral storage" in (done["message"] or ""), done
    else:
        assert done["state"] == "COMPLETE", done
    if size < 10 * MiB:
        for _, n, tail in stored:
            # (the executor's own lines before it, if any, are not the worker's: left out)
            assert cap - 4096 <= n, n
            assert f"[workflow-middlelayer: log cut at {cap} bytes]".encode() in tail, tail
        [(where, why)] = view["cuts"].items()
        assert where.startswith("log:") and str(cap) in why
        assert receipt["cuts"] == {where: why}
    assert rss.growth < RSS_GROWTH_MAX, f"the API's process grew by {rss.growth / MiB:.0f} MiB"
    # the pod and its log files are gone from the node
    wait_pods_gone(kube.api_client(stack.kubeconfig), t.namespace, job)
    wait_for(
        lambda: disk_before - shutil.disk_usage(stack.state_dir).free < 100 * MiB,
        120,
        interval=1,
        what="the node's disk given back",
    )


def test_a_2_gib_sparse_output_is_sealed_once_within_its_budget(adv: ApiTenant, tenant: ApiTenant) -> None:
    """Two replicas serve the tenant; five readers ask both at once; sealing runs once in all, and reads no more
    than the output cap (8 MiB) of the 2 GiB the archive unpacks to."""
    budget = 8 * MiB  # PROBE's limits.outputSize
    second = create_app(adv.settings)
    with another_tenants_job(tenant), serve(second) as url2, adv.client() as client, PeakRss() as rss:
        client.upload_bytes("probe", "entrypoint.sh", SPARSE.encode())
        job = client.start("probe")["id"]
        done = client.wait(job, timeout=300)
        urls = [adv.url, url2, adv.url, url2, adv.url]

        async def readers() -> list[httpx.Response]:
            headers = {"Authorization": f"Bearer {adv.token}"}
            async with httpx.AsyncClient(timeout=300, headers=headers) as http:
                return await asyncio.gather(*(http.get(f"{u}/v1/jobs/{job}/outputs") for u in urls))

        answers = asyncio.run(readers())
        wait_for(lambda: client.job(job)["cuts"], 120, what="the job's end settled, with its cut")
        view = client.job(job)
        receipt = client.receipt(job)
    assert done["state"] == "COMPLETE", done
    assert {a.status_code for a in answers} == {200}
    bodies = [a.json() for a in answers]
    assert all(b == bodies[0] for b in bodies), bodies
    assert [i["name"] for i in bodies[0]["items"]] == ["result"]
    assert bodies[0]["missing"]["tree"].startswith("withheld:") and "limits.outputSize" in bodies[0]["missing"]["tree"]
    assert "limits.outputSize" in view["cuts"]["outputs"] and receipt["cuts"] == view["cuts"]
    sealings = adv.app.state.tenant.sealing.count + second.state.tenant.sealing.count
    assert sealings == 1, f"sealed {sealings} times"
    record = json.loads(adv.app.state.tenant.storage.get_bytes(adv.app.state.tenant.storage.keys.job_seal(job)))
    # stopped at the budget, not at 2 GiB (a member whose header already says more is not read at all)
    assert record["read"] <= budget + 64 * 1024 and record["over_cap"], record
    assert rss.growth < RSS_GROWTH_MAX, f"the API's process grew by {rss.growth / MiB:.0f} MiB"


@pytest.mark.parametrize("replicas", [1, 2])
def test_twenty_parallel_snapshotting_starts_keep_the_storage_quota_exact(stack: StackInfo, replicas: int) -> None:
    quota = 16 * MiB
    mode = StartLockMode.LEASE if replicas > 1 else StartLockMode.PROCESS
    overrides: dict[str, Any] = {"quota_storage_bytes": quota, "quota_concurrent_jobs": 20, "start_lock": mode}
    with (
        api_tenant(stack, "store", extra_assets=(PROBE,), **overrides) as store,
        contextlib.ExitStack() as more,
    ):
        urls = [store.url, *(more.enter_context(serve(create_app(store.settings))) for _ in range(replicas - 1))]
        with store.client() as client:
            client.upload_bytes("probe", "entrypoint.sh", QUIET)
            client.upload_bytes("probe", "bundle.zip", zip_of(3 * MiB))
            staged = client.storage_usage()["used_bytes"]
            per_job = sum(i["size"] for i in client.staged("probe"))
        fits = (quota - staged) // per_job  # exactly this many snapshots fit

        async def fire() -> list[httpx.Response]:
            headers = {"Authorization": f"Bearer {store.token}"}
            async with httpx.AsyncClient(timeout=120, headers=headers) as http:
                return await asyncio.gather(
                    *(http.post(f"{urls[i % len(urls)]}/v1/jobs", json={"asset": "probe"}) for i in range(20))
                )

        responses = asyncio.run(fire())
        codes = Counter(r.status_code for r in responses)
        assert codes == {201: fits, 413: 20 - fits}, codes
        for refused in (r for r in responses if r.status_code == 413):
            problem = refused.json()
            assert refused.headers["content-type"].startswith("application/problem+json")
            assert problem["limit"] == "storage_bytes" and problem["value"] == quota, problem
            assert 0 <= problem["left"] < per_job, problem
        with store.client() as client:
            usage = client.storage_usage()
            assert usage["used_bytes"] <= quota, usage
            started = {r.json()["id"] for r in responses if r.status_code == 201}
            # the refused starts left nothing; what the started ones hold is listed with their jobs
            assert {j["job"] for j in usage["jobs"]} == started, usage["jobs"]
            assert all(j["has_job"] for j in usage["jobs"])
            for job in started:
                client.cancel(job)
