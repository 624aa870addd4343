"""Liveness and readiness (S3 and Argo Server reachable) without auth; Prometheus metrics behind the token."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.core.errors import ArgoUnavailable, StorageUnavailable
from api.routes.deps import TenantDep
from api.services.tenant import TenantContext
from api.web.problems import problem

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="S3 and Argo Server are reachable", response_model=None)
async def readyz(request: Request) -> Response | dict[str, str]:
    tenant: TenantContext = request.app.state.tenant
    try:
        await tenant.storage.ping()
    except StorageUnavailable as exc:
        return problem(503, "Not Ready", str(exc))
    try:
        await tenant.argo.info()
    except ArgoUnavailable as exc:
        return problem(503, "Not Ready", str(exc))
    return {"status": "ready"}


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request, _: TenantDep) -> Response:
    return Response(generate_latest(request.app.state.registry), media_type=CONTENT_TYPE_LATEST)
