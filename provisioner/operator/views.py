"""The admin API's views of tenants, grants, audit events and assets."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class GrantView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    transfer_process_id: str
    resource_definition_id: str
    asset_id: str
    asset_name: str
    tenant_id: str | None
    consumer_id: str | None
    contract_id: str | None
    resource_name: str
    state: str
    ended_by: str | None
    expires_at: datetime | None
    attempts: int
    error: str | None
    created_at: datetime
    called_back_at: datetime | None


class TenantView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    consumer_id: str
    namespace: str
    state: str
    s3_user: str | None
    expires_at: datetime | None
    generation: int
    attempts: int
    error: str | None
    created_at: datetime
    updated_at: datetime


class TenantDetail(TenantView):
    grants: list[GrantView] = []


class AuditView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    tenant_id: str | None
    grant_id: int | None
    event: str
    detail: dict[str, Any]


class AssetView(BaseModel):
    edc_asset_id: str
    name: str
    version: str
    source: Literal["directory", "admin"]
