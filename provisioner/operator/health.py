"""Liveness, readiness (database, Kubernetes, MinIO; causes go to the log, not to the caller) and metrics
(admin token)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from provisioner.infra import db
from provisioner.infra.kube import KubeError
from provisioner.infra.models import Grant, Tenant
from provisioner.infra.s3users import S3AdminError
from provisioner.web.deps import ServicesDep, require_admin

log = logging.getLogger(__name__)


def router() -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz")
    async def readyz(svc: ServicesDep) -> JSONResponse:
        checks: dict[str, str] = {}
        for name, probe in (
            ("database", lambda: db.ping(svc.engine)),
            ("kubernetes", svc.kube.version),
            ("storage", svc.storage.ping),
        ):
            try:
                await asyncio.to_thread(probe)
                checks[name] = "ok"
            except (SQLAlchemyError, KubeError, S3AdminError, OSError) as exc:
                log.warning("readiness: %s unavailable: %s", name, exc)
                checks[name] = "unavailable"  # details go to the log, not to whoever asks
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)

    @router.get("/metrics", dependencies=[Depends(require_admin)])
    async def metrics(svc: ServicesDep) -> PlainTextResponse:

        def counts() -> tuple[list[Any], list[Any]]:
            with svc.sessions() as session:
                tenants = session.execute(select(Tenant.state, func.count()).group_by(Tenant.state)).all()
                grants = session.execute(select(Grant.state, func.count()).group_by(Grant.state)).all()
            return list(tenants), list(grants)

        with contextlib.suppress(SQLAlchemyError):
            tenants, grants = await asyncio.to_thread(counts)
            svc.metrics.tenants.clear()
            svc.metrics.grants.clear()
            for state, n in tenants:
                svc.metrics.tenants.labels(state=state).set(n)
            for state, n in grants:
                svc.metrics.grants.labels(state=state).set(n)
        return PlainTextResponse(generate_latest(svc.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return router
