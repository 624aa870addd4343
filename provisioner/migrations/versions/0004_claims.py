"""Tenants carry a claim (replica, until when): several provisioner replicas never work on one tenant at once.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from provisioner.infra.models import UtcDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tenants") as batch:
        batch.add_column(sa.Column("claimed_by", sa.String(128)))
        batch.add_column(sa.Column("claim_until", UtcDateTime()))


def downgrade() -> None:
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("claim_until")
        batch.drop_column("claimed_by")
