"""Two provisioner replicas on PostgreSQL, as real processes: both serve EDC; the leader of the Lease runs the
reconciler; ``kill -9`` of the replica working on a tenant mid-provision lets the other finish it within the lease
time, with one tenant and one callback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from devstack.servers import free_port
from devstack.wait import wait_for
from provisioner.app import build_services
from provisioner.infra import db
from provisioner.infra.models import Grant, Tenant
from provisioner.infra.settings import ProvisionerSettings
from provisioner.infra.states import GrantState, TenantState
from tests.provisioner.servers import EdcStub
from tests.support.edc import cleanup, edc_request, new_consumer, post, tenant_of

pytestmark = pytest.mark.stack


def settings_env(settings: ProvisionerSettings) -> dict[str, str]:
    """The settings as the WML_PROVISIONER_* environment a deployed replica gets (secrets in clear)."""
    env: dict[str, str] = {}
    for name in ProvisionerSettings.model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, list | dict):
            value = json.dumps(value)
        elif isinstance(value, Path):
            value = str(value)
        env[f"WML_PROVISIONER_{name.upper()}"] = str(value)
    return env


class Replica:
    def __init__(self, name: str, settings: ProvisionerSettings, logs: Path) -> None:
        self.name, self.port = name, free_port()
        env = {**os.environ, **settings_env(settings.model_copy(update={"replica_id": name}))}
        self.log = (logs / f"{name}.log").open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "provisioner.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        wait_for(self.healthy, 60, interval=0.2, what=f"replica {name} serving")

    def healthy(self) -> bool:
        assert self.proc.poll() is None, f"replica {self.name} exited"
        try:
            return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


@contextmanager
def replicas(settings: ProvisionerSettings, logs: Path, *names: str) -> Iterator[dict[str, Replica]]:
    running: dict[str, Replica] = {}
    try:
        for name in names:
            running[name] = Replica(name, settings, logs)
        yield running
    finally:
        for replica in running.values():
            replica.stop()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_kill_9_of_the_working_replica_mid_provision(
    make_settings: Callable[..., ProvisionerSettings], edc: tuple[EdcStub, str], tmp_path: Path
) -> None:
    stub, edc_url = edc
    settings = make_settings(leader_lease_seconds=6, reconcile_interval_seconds=1.0)
    svc = build_services(settings)
    db.migrate(svc.engine)

    def grants(tenant: str) -> list[Grant]:
        with svc.sessions() as session:
            return list(session.scalars(select(Grant).where(Grant.tenant_id == tenant)))

    def tenant_row(tenant: str) -> Tenant | None:
        with svc.sessions() as session:
            return session.get(Tenant, tenant)

    def request(url: str) -> tuple[str, str]:
        consumer = new_consumer()
        body = edc_request(asset="dummy", consumer=consumer, callback=f"{edc_url}/management/callback")
        stub.register(body["transferProcessId"], consumer, "dummy")
        answer = post(url, body)
        assert answer.status_code == 201, answer.text
        return body["transferProcessId"], tenant_of(consumer)

    try:
        with replicas(settings, tmp_path, "replica-a", "replica-b") as running:
            a, b = running["replica-a"], running["replica-b"]
            # both serve: each provisions a tenant of its own
            served = [request(a.url), request(b.url)]
            for process, _ in served:
                wait_for(lambda p=process: stub.provisions(p), 120, what="callbacks from both replicas")

            # a request to A, and A is killed while it works on that tenant (it holds the tenant's claim)
            process, tenant = request(a.url)
            wait_for(lambda: (row := tenant_row(tenant)) is not None and row.claimed_by == "replica-a", 10)
            a.kill()
            killed = time.monotonic()
            wait_for(lambda: stub.provisions(process), 120, what="B finishes what A began")
            took = time.monotonic() - killed
            row = tenant_row(tenant)
            assert row is not None and row.state == TenantState.READY
            # the callback was seen by the connector; its answer is recorded a moment later
            wait_for(lambda: [g.state for g in grants(tenant)] == [GrantState.PROVISIONED], 10, what="provisioned")
            time.sleep(3)  # a late duplicate would arrive now
            assert len(stub.provisions(process)) == 1
            print(f"\nkill -9 of the working replica: B finished and called back {took:.1f}s later")
            # within the lease time (B leads once A's Lease lapses, then A's claim has lapsed too) plus the work
            assert took < settings.leader_lease_seconds * 2 + 60, took
            for process, _ in served:
                assert len(stub.provisions(process)) == 1
            with svc.sessions() as session:
                tenants = list(session.scalars(select(Tenant)))
            assert len(tenants) == 3 and len({t.namespace for t in tenants}) == 3
    finally:
        cleanup(svc)
        svc.close()
