"""The consumer API's memory under issue #26's attack shapes, beside the memory limit of the API container
(``api_limits_memory``, shipped 512Mi): the peak resident size of an API process run as its Deployment runs it
(``python -m api.server`` with the tenant's settings) while it answers

- a 1 MiB zip and a 1 MiB tar.gz that unpack to 1 GiB (refused at upload);
- a 300 MB single-line log, read 5 times live and 5 times once stored (cut at the log cap);
- a 2 GiB sparse output, read by 5 concurrent readers (sealing stops at the output cap);
- 20 parallel starts, each snapshotting a 3 MiB input against a 16 MiB storage quota.

Part of ``make bench WHICH=api``. Changed from the shipped defaults, and why: the storage quota (16 MiB, the size
the attack was tried at) and the concurrent-job quota (1000: the starts meet the storage quota, not that one).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable

import httpx

from devstack.stack import kube
from devstack.stack.launcher import StackInfo, ensure_stack
from provisioner.infra.settings import ProvisionerSettings
from templates.quantity import parse_quantity
from tests.api.tenant import ApiTenant, api_tenant
from tests.bench.serving import env_of, serve_process
from tests.support.attacks import BIG_LOG, ROOMY, SPARSE, read_all, tgz_bomb, zip_bomb, zip_of
from tests.support.memory import PeakRss
from tests.support.pods import wait_settled
from tests.support.probe import PROBE

MiB = 1024**2
QUOTA = 16 * MiB


def run() -> dict[str, float]:
    stack = ensure_stack()
    limit = float(parse_quantity(ProvisionerSettings.model_fields["api_limits_memory"].default)) / MiB
    print(f"API memory under attack shapes (changed: quota_storage_bytes={QUOTA}, quota_concurrent_jobs=1000)")
    overrides: dict[str, object] = {"quota_storage_bytes": QUOTA, "quota_concurrent_jobs": 1000}
    # The in-process API of the test tenant leaves the jobs' ends to the measured process (it would seal first).
    with api_tenant(stack, "bmem", (PROBE, ROOMY), finish_poll_seconds=3600.0, **overrides) as tenant:
        env = {**env_of(tenant.settings), "WML_API_FINISH_POLL_SECONDS": "1"}
        proc, url = serve_process(env)
        try:
            peaks = _shapes(stack, tenant, url, proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    for shape, peak in peaks.items():
        print(f"  {shape:<62} peak RSS {peak:6.1f} MiB   (limit {limit:.0f} MiB)")
    return {f"api_peak_mib_{i}": peak for i, peak in enumerate(peaks.values())}


def _shapes(stack: StackInfo, tenant: ApiTenant, url: str, pid: int) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {tenant.token}"}
    peaks: dict[str, float] = {}

    def watch(shape: str, fn: Callable[[], None]) -> None:
        with PeakRss(pid) as rss:
            fn()
        peaks[shape] = rss.peak_mib

    with httpx.Client(base_url=url, headers=headers, timeout=600) as http:

        def upload(asset: str, name: str, data: bytes) -> httpx.Response:
            return http.put(f"/v1/assets/{asset}/inputs/{name}", content=data)

        def job_of(asset: str, script: str) -> str:
            assert upload(asset, "entrypoint.sh", script.encode()).status_code in (200, 201)
            answer = http.post("/v1/jobs", json={"asset": asset})
            assert answer.status_code == 201, answer.text
            return str(answer.json()["id"])

        def settled(job: str) -> None:
            """Until the job's end is settled (its stored log is then what is read)."""
            wait_settled(kube.api_client(stack.kubeconfig), tenant.namespace, job, timeout=300)

        def bomb() -> None:
            answer = upload("probe", "bundle.zip", zip_bomb(1024**3))
            assert answer.status_code == 413, answer.text

        def tgz() -> None:
            answer = upload("probe", "bundle.tgz", tgz_bomb(1024**3))
            assert answer.status_code == 413, answer.text

        def log() -> None:
            job = job_of("roomy", BIG_LOG)
            while http.get(f"/v1/jobs/{job}").json()["state"] == "QUEUED":
                time.sleep(0.5)
            time.sleep(8)
            for _ in range(5):
                read_all(url, tenant.token, f"/v1/jobs/{job}/logs")
            settled(job)
            for _ in range(5):
                read_all(url, tenant.token, f"/v1/jobs/{job}/logs")

        def sparse() -> None:
            job = job_of("probe", SPARSE)
            while http.get(f"/v1/jobs/{job}").json()["state"] not in {"COMPLETE", "EXECUTOR_ERROR"}:
                time.sleep(0.5)

            async def readers() -> None:
                async with httpx.AsyncClient(base_url=url, headers=headers, timeout=600) as client:
                    await asyncio.gather(*(client.get(f"/v1/jobs/{job}/outputs") for _ in range(5)))

            asyncio.run(readers())

        def starts() -> None:
            for job in http.get("/v1/jobs", params={"limit": 100}).json()["items"]:
                http.delete(f"/v1/jobs/{job['id']}")  # the earlier shapes' jobs free the quota
            assert upload("probe", "entrypoint.sh", b"#!/bin/sh\nsleep 30\n").status_code in (200, 201)
            assert upload("probe", "bundle.zip", zip_of(3 * MiB)).status_code in (200, 201)

            async def fire() -> list[int]:
                async with httpx.AsyncClient(base_url=url, headers=headers, timeout=600) as client:
                    answers = await asyncio.gather(
                        *(client.post("/v1/jobs", json={"asset": "probe"}) for _ in range(20))
                    )
                    return [a.status_code for a in answers]

            codes = Counter(asyncio.run(fire()))
            print(f"  (20 parallel starts answered {dict(codes)})")

        watch("1 MiB zip unpacking to 1 GiB, refused at upload", bomb)
        watch("1 MiB tar.gz unpacking to 1 GiB, refused at upload", tgz)
        watch("300 MB single-line log, GET /logs x5 live and x5 stored", log)
        watch("2 GiB sparse output, 5 concurrent GET /outputs", sparse)
        watch("20 parallel starts snapshotting 3 MiB, 16 MiB quota", starts)
    return peaks
