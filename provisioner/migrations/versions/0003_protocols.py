"""Grants remember their protocol (HTTP provisioner, signaling, DPS) and how their endpoint is delivered.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("grants") as batch:
        batch.add_column(sa.Column("protocol", sa.String(24), nullable=False, server_default="http-provisioner"))
        batch.add_column(sa.Column("delivery", sa.String(16), nullable=False, server_default="callback"))


def downgrade() -> None:
    with op.batch_alter_table("grants") as batch:
        batch.drop_column("delivery")
        batch.drop_column("protocol")
