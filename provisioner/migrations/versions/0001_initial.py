"""Initial schema: tenants, grants, audit_events.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from provisioner.infra.models import UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("consumer_id", sa.String(512), nullable=False, unique=True),
        sa.Column("namespace", sa.String(63), nullable=False, unique=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("token_sha256", sa.String(64)),
        sa.Column("s3_user", sa.String(128)),
        sa.Column("expires_at", UtcDateTime()),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", UtcDateTime()),
        sa.Column("error", sa.Text),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
    )
    op.create_table(
        "grants",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("transfer_process_id", sa.String(256), nullable=False, index=True),
        sa.Column("resource_definition_id", sa.String(256), nullable=False),
        sa.Column("asset_id", sa.String(256), nullable=False),
        sa.Column("asset_name", sa.String(128), nullable=False),
        sa.Column("tenant_id", sa.String(32), sa.ForeignKey("tenants.id"), index=True),
        sa.Column("consumer_id", sa.String(512)),
        sa.Column("contract_id", sa.String(512)),
        sa.Column("callback_address", sa.String(2048), nullable=False),
        sa.Column("policy", sa.JSON, nullable=False),
        sa.Column("resource_name", sa.String(253), nullable=False),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("ended_by", sa.String(16)),
        sa.Column("expires_at", UtcDateTime()),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", UtcDateTime()),
        sa.Column("error", sa.Text),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.Column("called_back_at", UtcDateTime()),
        sa.Column("deprovision_callback", sa.String(16)),
        sa.UniqueConstraint("transfer_process_id", "resource_definition_id", name="uq_grant_request"),
    )
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", UtcDateTime(), nullable=False, index=True),
        sa.Column("tenant_id", sa.String(32), index=True),
        sa.Column("grant_id", sa.Integer),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("detail", sa.JSON, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("audit_events")
    op.drop_table("grants")
    op.drop_table("tenants")
