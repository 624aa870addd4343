"""The concurrent-job quota holds exactly under 20 parallel starts, to one API instance and spread over two replicas
of the same tenant (which then share the start lock through a Kubernetes Lease: api/startlock.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter

import httpx
import pytest

from api.app import create_app
from api.settings import StartLockMode
from devstack.servers import serve
from devstack.stack.launcher import StackInfo
from tests.api.tenant import QUOTA_CONCURRENT_JOBS, api_tenant

pytestmark = pytest.mark.stack

SLOW = b"SOURCE=/etc/os-release\nDESTINATION=/output/result\nSLEEPTIME=60\n"


@pytest.mark.parametrize("replicas", [1, 2])
def test_twenty_parallel_starts_never_exceed_the_quota(stack: StackInfo, replicas: int) -> None:
    mode = StartLockMode.LEASE if replicas > 1 else StartLockMode.PROCESS
    with api_tenant(stack, "quota", start_lock=mode) as tenant, contextlib.ExitStack() as more:
        urls = [tenant.url, *(more.enter_context(serve(create_app(tenant.settings))) for _ in range(replicas - 1))]
        with tenant.client() as client:
            client.upload_bytes("dummy", "env", SLOW)

        async def fire() -> list[httpx.Response]:
            headers = {"Authorization": f"Bearer {tenant.token}"}
            async with httpx.AsyncClient(timeout=120, headers=headers) as http:
                return await asyncio.gather(
                    *(http.post(f"{urls[i % len(urls)]}/v1/jobs", json={"asset": "dummy"}) for i in range(20))
                )

        responses = asyncio.run(fire())
        codes = Counter(r.status_code for r in responses)
        assert codes == {201: QUOTA_CONCURRENT_JOBS, 429: 20 - QUOTA_CONCURRENT_JOBS}, codes
        assert all(
            r.headers["content-type"].startswith("application/problem+json") for r in responses if r.status_code == 429
        )
        with tenant.client() as client:
            listed = client.jobs(limit=50)["items"]
            assert len(listed) == QUOTA_CONCURRENT_JOBS  # the withdrawn starts left no Workflow behind
            for job in listed:
                client.cancel(job["id"])
