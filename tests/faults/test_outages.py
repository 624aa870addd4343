"""Stack components killed (``kill -9``) and restarted while jobs run, on the real stack.

After each recovery every job whose worker succeeded ends COMPLETE with its outputs; during the outage the consumer
API answers 503 with Retry-After (or, for what it can still serve, 200), never a 500 and never a hang. The
headline case: S3 down for more than five minutes exactly while finished jobs save their outputs (Argo's executor
retries within the window argo/base configures) loses nothing.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from api.client import Client, RetryPolicy
from devstack.stack.config import Layout
from devstack.stack.launcher import StackInfo, processes
from devstack.wait import wait_for
from tests.api.tenant import ApiTenant, api_tenant
from tests.support.probe import PROBE

pytestmark = pytest.mark.stack

# The probe asset with room for a long outage inside the job's own time limit.
PATIENT = PROBE.model_copy(update={"name": "patient", "limits": PROBE.limits.model_copy(update={"timeout": 1800})})
SCRIPT = b"#!/bin/sh\nsleep $PAUSE\nprintf 'computed %s\\n' \"$JOB_MARK\" > /output/result\n"
S3_OUTAGE_SECONDS = 310  # more than five minutes


@contextmanager
def killed(name: str) -> Iterator[None]:
    """``kill -9`` one stack process; restart it (same command line) when the block ends."""
    layout = Layout()
    proc = processes(layout)[name]
    pid = proc.pid(layout)
    assert pid is not None, f"{name} is not running"
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: proc.pid(layout) is None, 30, what=f"{name} gone")
    try:
        yield
    finally:
        proc.start(layout)
        proc.wait_healthy(layout)


@pytest.fixture(scope="module")
def patient(stack: StackInfo) -> Iterator[ApiTenant]:
    with api_tenant(stack, "faults", extra_assets=(PATIENT,)) as tenant:
        yield tenant


def start_job(client: Client, mark: str, pause: int) -> str:
    client.upload_bytes("patient", "entrypoint.sh", SCRIPT)
    client.upload_bytes("patient", "env", f"PAUSE={pause}\nJOB_MARK={mark}\n".encode())
    return str(client.start("patient")["id"])


def probe_api(tenant: ApiTenant, seen: dict[int, int]) -> None:
    """One read and one write as a consumer would send them, without retries: what does the API answer?"""
    headers = {"Authorization": f"Bearer {tenant.token}"}
    for method, path, body in (
        ("GET", "/v1/jobs", None),
        ("PUT", "/v1/assets/patient/inputs/data/probe.txt", b"written during the outage\n"),
    ):
        answer = httpx.request(method, f"{tenant.url}{path}", headers=headers, content=body, timeout=30)
        seen[answer.status_code] = seen.get(answer.status_code, 0) + 1
        assert answer.status_code < 300 or answer.status_code == 503, (path, answer.status_code, answer.text)
        if answer.status_code == 503:
            assert answer.headers.get("retry-after"), answer.headers
            assert answer.headers["content-type"].startswith("application/problem+json")


def finished_with_outputs(client: Client, jobs: dict[str, str], tmp_path: Path) -> None:
    for job, mark in jobs.items():
        done = client.wait(job, timeout=600)
        # the whole story when it fails: Argo's message and each step's
        assert done["state"] == "COMPLETE", (
            mark,
            done.get("message"),
            [(s["name"], s["phase"], s["message"]) for s in done.get("steps", [])],
        )
        result = client.download(job, "result", tmp_path / f"{job}.txt").read_text()
        assert result == f"computed {mark}\n", result


@pytest.mark.timeout(1500)
def test_s3_down_over_five_minutes_while_outputs_are_saved_loses_nothing(patient: ApiTenant, tmp_path: Path) -> None:
    with patient.client() as client:
        jobs = {start_job(client, f"s3-{i}", pause=25): f"s3-{i}" for i in range(2)}
        for job in jobs:
            wait_for(lambda j=job: client.job(j)["state"] == "RUNNING", 180, interval=1, what="jobs running")
        time.sleep(5)  # the workers have read their inputs; they finish, and save outputs, during the outage
        seen: dict[int, int] = {}
        with killed("minio"):
            began = time.monotonic()
            while time.monotonic() - began < S3_OUTAGE_SECONDS:
                probe_api(patient, seen)
                time.sleep(20)
        assert seen.get(503), seen  # the outage was seen, and answered as retryable
        finished_with_outputs(client, jobs, tmp_path)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("component", ["workflow-controller", "argo-server", "kube-apiserver", "minio"])
def test_component_killed_and_restarted_under_running_jobs(patient: ApiTenant, component: str, tmp_path: Path) -> None:
    retrying = Client(patient.url, patient.token, retry=RetryPolicy(attempts=60, cap_seconds=5.0))
    with patient.client() as client, retrying, ThreadPoolExecutor(1) as pool:
        jobs = {start_job(client, f"{component}-{i}", pause=20): f"{component}-{i}" for i in range(2)}
        wait_for(lambda: all(client.job(j)["state"] == "RUNNING" for j in jobs), 180, interval=1, what="running")
        seen: dict[int, int] = {}
        with killed(component):
            # a consumer's retrying client starts a job during the outage: it gets through once the part is back
            late = pool.submit(start_job, retrying, f"{component}-late", 1)
            for _ in range(3):
                probe_api(patient, seen)
                time.sleep(5)
        jobs[late.result(timeout=300)] = f"{component}-late"
        finished_with_outputs(retrying, jobs, tmp_path)
        assert all(code < 300 or code == 503 for code in seen), seen
