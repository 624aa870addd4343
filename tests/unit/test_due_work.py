"""The reconciler's due work, decided from the database and an injected time alone (no waiting, no wall clock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from provisioner.core import store
from provisioner.infra import db
from provisioner.infra.models import Grant, GrantState, Tenant, TenantState

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def sessions(tmp_path: Path) -> sessionmaker[Session]:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'p.db'}")
    db.migrate(engine)
    return db.session_factory(engine)


def add(sessions: sessionmaker[Session], tenant: str, tenant_state: TenantState, **grant: object) -> None:
    with sessions.begin() as session:
        session.add(Tenant(id=tenant, consumer_id=f"c-{tenant}", namespace=f"wml-{tenant}", state=tenant_state))
        session.flush()
        if grant:
            values = {
                "transfer_process_id": f"tp-{tenant}",
                "resource_definition_id": "rd",
                "asset_id": "dummy",
                "asset_name": "dummy",
                "callback_address": "http://edc/callback",
                "resource_name": f"r-{tenant}",
                "tenant_id": tenant,
                **grant,
            }
            session.add(Grant(**values))


def test_due_work_follows_the_injected_time(sessions: sessionmaker[Session]) -> None:
    later = NOW + timedelta(minutes=5)
    add(sessions, "t-idle", TenantState.READY, state=GrantState.PROVISIONED, expires_at=NOW + timedelta(days=1))
    add(sessions, "t-expired", TenantState.READY, state=GrantState.PROVISIONED, expires_at=NOW - timedelta(seconds=1))
    add(sessions, "t-pending", TenantState.PENDING)
    add(sessions, "t-backoff", TenantState.PENDING)
    with sessions.begin() as session:
        tenant = session.get(Tenant, "t-backoff")
        assert tenant is not None
        tenant.next_attempt_at = later
    add(sessions, "t-callback", TenantState.READY, state=GrantState.READY, next_attempt_at=later)
    add(sessions, "t-deleted", TenantState.DELETED, state=GrantState.DEPROVISIONED)

    _, due = store.due_work(sessions, NOW)
    assert due == ["t-expired", "t-pending"]
    _, due = store.due_work(sessions, later)
    assert due == ["t-backoff", "t-callback", "t-expired", "t-pending"]
    # the idle tenant becomes due exactly when its contract ends, not before
    _, due = store.due_work(sessions, NOW + timedelta(days=1) - timedelta(microseconds=1))
    assert "t-idle" not in due
    _, due = store.due_work(sessions, NOW + timedelta(days=1))
    assert "t-idle" in due


def test_backoff_doubles_and_is_capped() -> None:
    from provisioner.infra.settings import ProvisionerSettings

    settings = ProvisionerSettings(retry_base_seconds=1.0, retry_max_seconds=30.0)
    assert [store.backoff(settings, n).total_seconds() for n in (1, 2, 3, 4, 5, 6, 10)] == [1, 2, 4, 8, 16, 30, 30]
