"""Durable state: tenants, grants (one per EDC transfer: a provisioned resource or a data flow), the audit trail.

State values and their allowed changes live in :mod:`provisioner.infra.states`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, Text, TypeDecorator, UniqueConstraint
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from provisioner.infra.states import (
    ACTIVE_GRANT_STATES,
    HOLDING_GRANT_STATES,
    GrantState,
    Handover,
    Protocol,
    TenantState,
)

__all__ = [
    "ACTIVE_GRANT_STATES",
    "HOLDING_GRANT_STATES",
    "AuditEvent",
    "Base",
    "Grant",
    "GrantState",
    "RegisteredAsset",
    "Tenant",
    "TenantState",
]


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UtcDateTime, dict[str, Any]: JSON}


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    consumer_id: Mapped[str] = mapped_column(String(512), unique=True)
    namespace: Mapped[str] = mapped_column(String(63), unique=True)
    state: Mapped[str] = mapped_column(String(16), default=TenantState.PENDING)
    token_sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    s3_user: Mapped[str | None] = mapped_column(String(128), default=None)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    generation: Mapped[int] = mapped_column(Integer, default=1)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    # Which replica works on the tenant, until when (renewed while it works): one run at a time across replicas.
    claimed_by: Mapped[str | None] = mapped_column(String(128), default=None)
    claim_until: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Grant(Base):
    __tablename__ = "grants"
    __table_args__ = (UniqueConstraint("transfer_process_id", "resource_definition_id", name="uq_grant_request"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    transfer_process_id: Mapped[str] = mapped_column(String(256), index=True)
    resource_definition_id: Mapped[str] = mapped_column(String(256))
    asset_id: Mapped[str] = mapped_column(String(256))
    asset_name: Mapped[str] = mapped_column(String(128))
    tenant_id: Mapped[str | None] = mapped_column(ForeignKey("tenants.id"), default=None, index=True)
    consumer_id: Mapped[str | None] = mapped_column(String(512), default=None)
    contract_id: Mapped[str | None] = mapped_column(String(512), default=None)
    callback_address: Mapped[str] = mapped_column(String(2048))
    policy: Mapped[dict[str, Any]] = mapped_column(default=dict)
    resource_name: Mapped[str] = mapped_column(String(253))
    state: Mapped[str] = mapped_column(String(16), default=GrantState.RECEIVED, index=True)
    ended_by: Mapped[str | None] = mapped_column(String(16), default=None)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    called_back_at: Mapped[datetime | None] = mapped_column(default=None)
    # The optional deprovision callback (states.EndNotice), None when not wanted.
    deprovision_callback: Mapped[str | None] = mapped_column(String(16), default=None)
    protocol: Mapped[str] = mapped_column(String(24), default=Protocol.HTTP_PROVISIONER)
    delivery: Mapped[str] = mapped_column(String(16), default=Handover.CALLBACK)


class AuditEvent(Base):
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    tenant_id: Mapped[str | None] = mapped_column(String(32), default=None, index=True)
    grant_id: Mapped[int | None] = mapped_column(Integer, default=None)
    event: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class RegisteredAsset(Base):
    """A WorkflowAsset registered through the admin API (in addition to the asset directory)."""

    __tablename__ = "assets"

    edc_asset_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    asset_name: Mapped[str] = mapped_column(String(128), index=True)
    spec: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
