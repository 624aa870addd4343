"""Alembic migrations on a real SQLite file: upgrade step by step, idempotent, downgrade."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from sqlalchemy import inspect

from provisioner.infra import db


def test_upgrade_stepwise_idempotent_and_downgrade(tmp_path: Path) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'state' / 'p.db'}")  # the parent directory is created
    db.migrate(engine, "0001")
    assert "assets" not in inspect(engine).get_table_names()
    db.migrate(engine)
    db.migrate(engine)
    assert {"tenants", "grants", "audit_events", "assets"} <= set(inspect(engine).get_table_names())
    uniques = inspect(engine).get_unique_constraints("grants")
    assert any(set(u["column_names"]) == {"transfer_process_id", "resource_definition_id"} for u in uniques)
    command.downgrade(db.alembic_config(engine), "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()
