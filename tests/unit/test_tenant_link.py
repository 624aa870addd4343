"""A grant reaches its consumer's tenant by the consumer id, never by the hash of it alone."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from provisioner.core import store
from provisioner.infra import db
from provisioner.infra.models import Grant, GrantState, Tenant, TenantState
from provisioner.infra.settings import ProvisionerSettings
from templates.names import tenant_id_for

SETTINGS = ProvisionerSettings(database_url="sqlite://")


@pytest.fixture
def sessions(tmp_path: Path) -> sessionmaker[Session]:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'p.db'}")
    db.migrate(engine)
    return db.session_factory(engine)


def grant(session: Session, tp: str) -> Grant:
    row = Grant(
        transfer_process_id=tp,
        resource_definition_id="rd",
        asset_id="dummy",
        asset_name="dummy",
        callback_address="http://edc/callback",
        resource_name="r",
        state=GrantState.RECEIVED,
    )
    session.add(row)
    session.flush()
    return row


def test_a_colliding_id_is_refused_not_shared(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:  # the victim's tenant, under the id the attacker's consumer id hashes to
        session.add(Tenant(id=tenant_id_for("did:web:attacker"), consumer_id="did:web:victim", namespace="wml-v"))
    with sessions.begin() as session, pytest.raises(store.TenantCollision):
        store.link_tenant(session, grant(session, "tp-1"), "did:web:attacker", SETTINGS)


def test_a_tenant_with_an_older_shorter_id_is_found_by_its_consumer(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        session.add(
            Tenant(id="t-0123456789ab", consumer_id="c", namespace="wml-t-0123456789ab", state=TenantState.READY)
        )
    with sessions.begin() as session:
        tenant = store.link_tenant(session, grant(session, "tp-2"), "c", SETTINGS)
        assert tenant.id == "t-0123456789ab"
