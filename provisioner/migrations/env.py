"""Alembic environment: the engine comes from ``provisioner.infra.db.alembic_config``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from provisioner.infra.models import Base

# Any number held by this application: replicas starting together migrate one after the other (PostgreSQL).
MIGRATION_LOCK = 0x574D4C  # "WML"

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    context.run_migrations()
