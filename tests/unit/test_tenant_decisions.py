"""What the lifecycle decides to do with a tenant, from its rows and an injected time (nothing else is touched)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from provisioner.core import lifecycle
from provisioner.infra import db
from provisioner.infra.models import Grant, GrantState, Tenant, TenantState
from provisioner.infra.services import Services
from provisioner.infra.settings import ProvisionerSettings

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
PENDING = TenantState.PENDING


@pytest.fixture
def svc(tmp_path: Path) -> Services:
    settings = ProvisionerSettings(database_url=f"sqlite:///{tmp_path / 'p.db'}")
    engine = db.make_engine(settings.database_url)
    db.migrate(engine)
    # The decision reads the database and the clock only: no Kubernetes, MinIO or EDC client is needed.
    return Services(
        settings=settings,
        engine=engine,
        sessions=db.session_factory(engine),
        kube=None,  # type: ignore[arg-type]
        storage=None,  # type: ignore[arg-type]
        management=None,  # type: ignore[arg-type]
        catalogue=None,  # type: ignore[arg-type]
        probe=None,  # type: ignore[arg-type]
        clock=lambda: NOW,
    )


def given(svc: Services, state: TenantState, *grants: dict[str, Any]) -> None:
    with svc.sessions.begin() as session:
        session.add(Tenant(id="t-1", consumer_id="c", namespace="wml-t-1", state=state, generation=1, attempts=0))
        session.flush()
        for i, grant in enumerate(grants):
            values = {
                "transfer_process_id": f"tp-{i}",
                "resource_definition_id": "rd",
                "asset_id": "dummy",
                "asset_name": "dummy",
                "callback_address": "http://edc/callback",
                "resource_name": f"r-{i}",
                "tenant_id": "t-1",
                "contract_id": f"contract-{i}",
                **grant,
            }
            session.add(Grant(**values))


def tenant(svc: Services) -> Tenant:
    with svc.sessions() as session:
        row = session.get(Tenant, "t-1")
        assert row is not None
        return row


@pytest.mark.parametrize(
    "state,grants,mode,after",
    [
        (TenantState.READY, [{"state": GrantState.PROVISIONED}], "deliver", TenantState.READY),
        (TenantState.READY, [{"state": GrantState.SUSPENDED}], "deliver", TenantState.READY),
        (
            TenantState.READY,
            [{"state": GrantState.SUSPENDED}, {"state": GrantState.DEPROVISIONING}],
            "apply",
            TenantState.PENDING,
        ),
        (TenantState.PENDING, [{"state": GrantState.PROVISIONING}], "apply", TenantState.PENDING),
        (
            TenantState.READY,
            [{"state": GrantState.PROVISIONED}, {"state": GrantState.PROVISIONING}],
            "apply",
            TenantState.PENDING,
        ),
        (TenantState.READY, [{"state": GrantState.DEPROVISIONING}], "teardown", TenantState.TEARING_DOWN),
        (TenantState.FAILED, [{"state": GrantState.PROVISIONING}], "idle", TenantState.FAILED),
        (TenantState.DELETED, [{"state": GrantState.DEPROVISIONED}], "idle", TenantState.DELETED),
        (TenantState.DELETED, [{"state": GrantState.PROVISIONING}], "apply", TenantState.PENDING),
    ],
)
def test_mode_follows_the_grants(
    svc: Services, state: TenantState, grants: list[dict[str, Any]], mode: str, after: TenantState
) -> None:
    given(svc, state, *grants)
    decision = lifecycle.decide(svc, "t-1", force=False)
    assert decision is not None and decision.mode == mode
    assert tenant(svc).state == after


def test_a_contract_ends_exactly_at_its_end(svc: Services) -> None:
    given(svc, TenantState.READY, {"state": GrantState.PROVISIONED, "expires_at": NOW + timedelta(hours=1)})
    decision = lifecycle.decide(svc, "t-1", force=False)
    assert decision is not None and decision.mode == "deliver" and decision.snap.active_grant_ids == (1,)
    svc.clock = lambda: NOW + timedelta(hours=1)
    decision = lifecycle.decide(svc, "t-1", force=False)
    assert decision is not None and decision.mode == "teardown" and decision.snap.active_grant_ids == ()
    with svc.sessions() as session:
        grant = session.get(Grant, 1)
        assert grant is not None and grant.state == GrantState.DEPROVISIONING and grant.ended_by == "expiry"


def test_backoff_is_honoured_unless_forced(svc: Services) -> None:
    given(svc, TenantState.PENDING, {"state": GrantState.PROVISIONING})
    with svc.sessions.begin() as session:
        row = session.get(Tenant, "t-1")
        assert row is not None
        row.next_attempt_at = NOW + timedelta(seconds=30)
    assert lifecycle.decide(svc, "t-1", force=False) is None
    forced = lifecycle.decide(svc, "t-1", force=True)
    assert forced is not None and forced.mode == "apply"
