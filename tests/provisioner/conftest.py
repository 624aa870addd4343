"""Fixtures: the EDC stand-in, provisioner settings on the real stack, a running provisioner."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.stack.launcher import StackInfo
from provisioner.app import build_services, create_app
from provisioner.infra import db
from provisioner.infra.services import Services
from provisioner.infra.settings import ProvisionerSettings
from tests.provisioner.helpers import stack_settings
from tests.provisioner.servers import EdcStub, ThreadedServer
from tests.support.edc import cleanup, edc_request, new_consumer


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
def settings_overrides() -> dict[str, Any]:
    """Settings a test module wants for its ``services`` (override this fixture there)."""
    return {}


@pytest.fixture
def services(
    make_settings: Callable[..., ProvisionerSettings], settings_overrides: dict[str, Any]
) -> Iterator[Services]:
    """Services on the real stack with a fresh SQLite database; tenants removed afterwards."""
    svc = build_services(make_settings(**settings_overrides))
    db.migrate(svc.engine)
    try:
        yield svc
    finally:
        cleanup(svc)
        svc.close()


@pytest.fixture
def provisioner(services: Services) -> Iterator[str]:
    """A running provisioner (real uvicorn on loopback) over ``services``; yields its base URL."""
    with ThreadedServer(create_app(services.settings, services=services)) as server:
        yield server.url


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
