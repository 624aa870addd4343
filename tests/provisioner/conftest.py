"""Fixtures: the EDC stand-in, provisioner settings on the real stack, a running provisioner."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from provisioner import db
from provisioner.app import PROVISION_PATH, create_app
from provisioner.kube import KubeError
from provisioner.services import Services
from provisioner.settings import ProvisionerSettings
from provisioner.storage import StorageError
from provisioner.tenants import tenant_id_for
from tests.provisioner.helpers import ADMIN_TOKEN, ASSETS, INBOUND_KEY, stack_settings
from tests.provisioner.servers import EdcStub, ThreadedServer
from tests.stack.launcher import StackInfo

__all__ = ["ADMIN_TOKEN", "ASSETS", "INBOUND_KEY"]


@pytest.fixture
def edc() -> Iterator[tuple[EdcStub, str]]:
    stub = EdcStub()
    with ThreadedServer(stub.app()) as server:
        yield stub, server.url


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server for the session (skips where none can run)."""
    import shutil
    import tempfile

    from tests.provisioner import postgres

    reason = postgres.available()
    if reason:
        pytest.skip(reason)
    base = Path(tempfile.mkdtemp(prefix="wml-postgres-"))  # pytest's tmp dirs are closed to other users
    try:
        with postgres.postgres_server(base) as url:
            yield url
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The state store: SQLite by default; tests parametrize ``database_url`` with "postgresql" too."""
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
        from sqlalchemy import create_engine, text

        name = f"wml_{uuid.uuid4().hex[:12]}"
        engine = create_engine(url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
        engine.dispose()
        return url.rsplit("/", 1)[0] + f"/{name}"
    return f"sqlite:///{tmp_path / 'provisioner.db'}"


@pytest.fixture
def make_settings(stack: StackInfo, database_url: str, edc: tuple[EdcStub, str]) -> Callable[..., ProvisionerSettings]:
    _, edc_url = edc

    def make(**overrides: Any) -> ProvisionerSettings:
        return stack_settings(stack, database_url, edc_url, **overrides)

    return make


@pytest.fixture
def services(make_settings: Callable[..., ProvisionerSettings]) -> Iterator[Services]:
    """Services on the real stack with a fresh SQLite database; tenants removed afterwards."""
    svc = Services.build(make_settings())
    db.migrate(svc.engine)
    try:
        yield svc
    finally:
        cleanup(svc)
        svc.close()


def cleanup(svc: Services) -> None:
    """Remove whatever tenants of this database left in Kubernetes and MinIO (no waiting)."""
    from sqlalchemy import select

    from provisioner.models import Tenant

    with svc.sessions() as session:
        tenants = list(session.scalars(select(Tenant)))
    for tenant in tenants:
        with contextlib.suppress(KubeError, StorageError):  # a stack hiccup fails the test, not this
            svc.kube.delete("v1", "Namespace", tenant.namespace)
            svc.storage.remove_user(f"wml-{tenant.id}")
            svc.storage.delete_prefix(svc.settings.s3_prefix_for(tenant.id))


@pytest.fixture
def provisioner(services: Services) -> Iterator[str]:
    """A running provisioner (real uvicorn on loopback) over ``services``; yields its base URL."""
    with ThreadedServer(create_app(services.settings, services=services)) as server:
        yield server.url


def edc_request(
    asset: str = "dummy",
    consumer: str | None = None,
    transfer: str | None = None,
    definition: str | None = None,
    kind: str | None = "provision",
    callback: str = "http://127.0.0.1:9/management/callback",
    policy: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A request body as EDC v0.15 sends it (captured shape)."""
    body: dict[str, Any] = {
        "assetId": asset,
        "transferProcessId": transfer or str(uuid.uuid4()),
        "policy": policy
        if policy is not None
        else {
            "permissions": [],
            "prohibitions": [],
            "obligations": [],
            "extensibleProperties": {},
            "inheritsFrom": None,
            "assigner": None,
            "assignee": consumer,
            "target": asset,
            "@type": {"@policytype": "set"},
        },
        "callbackAddress": callback,
        "resourceDefinitionId": definition or str(uuid.uuid4()),
    }
    if kind is not None:
        body["type"] = kind
    return body


@pytest.fixture
def contract(edc: tuple[EdcStub, str]) -> Callable[..., dict[str, Any]]:
    """A provision request for a transfer the stand-in connector really has (it verifies as EDC's would)."""
    stub, edc_url = edc

    def make(asset: str = "dummy", consumer: str | None = None, assignee: bool = True, **kw: Any) -> dict[str, Any]:
        consumer = consumer or new_consumer()
        body = edc_request(
            asset=asset, consumer=consumer if assignee else None, callback=f"{edc_url}/management/callback", **kw
        )
        stub.register(body["transferProcessId"], consumer, asset)
        return body

    return make


def post(url: str, body: Any, raw: bytes | None = None, key: str | None = INBOUND_KEY) -> httpx.Response:
    content = raw if raw is not None else httpx.Request("POST", "/", json=body).content
    headers = {"Content-Type": "application/json", **({"X-Api-Key": key} if key else {})}
    return httpx.post(f"{url}{PROVISION_PATH}", content=content, headers=headers, timeout=30)


def new_consumer() -> str:
    return f"consumer-{uuid.uuid4().hex[:10]}"


def tenant_of(consumer: str) -> str:
    return tenant_id_for(consumer)
