"""Row claims: one replica at a time works on a tenant; a dead replica's claim lapses; a claim changes nothing
else about the tenant (its updated_at included)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from provisioner.core import store
from provisioner.core.store import TenantClaim
from provisioner.infra import db
from provisioner.infra.models import Tenant, TenantState, utcnow


def test_one_holder_at_a_time_and_a_lapsed_claim_is_free(tmp_path: Path) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'p.db'}")
    db.migrate(engine)
    sessions = db.session_factory(engine)
    now = utcnow()
    long_ago = now - timedelta(days=1)
    with sessions.begin() as session:
        session.add(
            Tenant(id="t1", consumer_id="c1", namespace="wml-t1", state=TenantState.PENDING, updated_at=long_ago)
        )

    assert store.claim_tenant(sessions, "t1", "a", now, 15) is TenantClaim.CLAIMED
    assert store.claim_tenant(sessions, "t1", "b", now + timedelta(seconds=5), 15) is TenantClaim.HELD
    assert store.claim_tenant(sessions, "t1", "a", now + timedelta(seconds=10), 15) is TenantClaim.CLAIMED  # renewed
    assert store.claim_tenant(sessions, "t1", "b", now + timedelta(seconds=20), 15) is TenantClaim.HELD
    # "a" died: its claim lapses 15 s after its last renewal
    assert store.claim_tenant(sessions, "t1", "b", now + timedelta(seconds=26), 15) is TenantClaim.CLAIMED
    store.release_tenant(sessions, "t1", "a")  # not its claim any more: nothing happens
    assert store.claim_tenant(sessions, "t1", "a", now + timedelta(seconds=27), 15) is TenantClaim.HELD
    store.release_tenant(sessions, "t1", "b")
    assert store.claim_tenant(sessions, "t1", "a", now + timedelta(seconds=28), 15) is TenantClaim.CLAIMED
    assert store.claim_tenant(sessions, "nobody", "a", now, 15) is TenantClaim.GONE
    with sessions() as session:
        row = session.get(Tenant, "t1")
        assert row is not None and row.updated_at == long_ago and row.state == TenantState.PENDING
    engine.dispose()
