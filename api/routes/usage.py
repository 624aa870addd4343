"""What the contract's storage quota holds, listed to the consumer: each staged asset, each job's keys (also of
jobs whose Workflow has expired: ``DELETE /v1/jobs/{job}`` removes them), and the rest."""

from __future__ import annotations

from fastapi import APIRouter

from api.core.schemas import StorageUsage
from api.routes.deps import TenantDep
from api.services.usage import storage_usage

router = APIRouter(prefix="/v1/usage", tags=["usage"])


@router.get("/storage", response_model=StorageUsage, summary="What counts against the storage quota")
async def get_storage_usage(tenant: TenantDep) -> StorageUsage:
    return await storage_usage(tenant)
