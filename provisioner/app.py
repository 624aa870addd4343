"""The provisioner's application: the protocol adapters, admin and health routes on one app, the reconciler
and the data plane registrar in its lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, Response

from provisioner.core.scheduler import Worker
from provisioner.infra import db
from provisioner.infra.services import Services
from provisioner.infra.settings import ProvisionerSettings
from provisioner.operator import admin, health
from provisioner.protocols.dps import routes as dps
from provisioner.protocols.dps import wire as dps_wire
from provisioner.protocols.http_provisioner import routes as edc_http
from provisioner.protocols.http_provisioner.routes import PROVISION_PATH
from provisioner.protocols.registrar import Registrar
from provisioner.protocols.signaling import routes as signaling
from provisioner.protocols.signaling import wire as signaling_wire

__all__ = ["PROVISION_PATH", "create_app"]
log = logging.getLogger(__name__)


def create_app(
    settings: ProvisionerSettings | None = None, services: Services | None = None, migrate: bool = True
) -> FastAPI:
    settings = settings or ProvisionerSettings()
    svc = services or Services.build(settings)
    if not settings.edc_management_url:
        log.warning(
            "WML_PROVISIONER_EDC_MANAGEMENT_URL is not set: deprovision requests of EDC <= 0.10 (no `type`) "
            "cannot be recognised and are taken for provision repeats"
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if migrate:
            await asyncio.to_thread(db.migrate, svc.engine)
        worker = Worker(svc)
        app.state.worker = worker
        tasks = []
        if settings.reconciler_enabled:
            tasks.append(asyncio.create_task(worker.lead_forever()))
            tasks.append(asyncio.create_task(worker.reconcile_forever()))
            tasks.append(asyncio.create_task(worker.sweep_forever()))
        registrar = Registrar(svc)
        if registrar.wanted:
            tasks.append(asyncio.create_task(registrar.run_forever()))
        app.state.registrar = registrar
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await worker.close()
            if services is None:
                svc.close()

    app = FastAPI(
        title="Workflow Middle-Layer provisioner",
        description="One isolated Kubernetes/Argo tenant per consumer contract, for EDC's HTTP provisioner and "
        "for data plane signaling (EDC's JSON-LD dialect and the Eclipse Data Plane Signaling API).",
        version="0.2.0",
        lifespan=lifespan,
        # The schema is in docs/; not served to every pod that can reach the port.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )

    @app.exception_handler(HTTPException)
    async def dialect_errors(request: Request, exc: HTTPException) -> Response:
        # Refusals before a handler runs (no key, a bad token) in the shape of the caller's dialect.
        shape = None
        if request.url.path.startswith("/signaling/"):
            shape = signaling_wire.error(str(exc.detail))
        elif request.url.path.startswith("/dps/"):
            shape = dps_wire.error(str(exc.detail))
        if shape is None:
            return await http_exception_handler(request, exc)
        return JSONResponse(shape, status_code=exc.status_code, headers=exc.headers)

    app.state.services = svc
    app.state.settings = settings  # what create_app was given governs who may call (tests vary it)
    app.include_router(edc_http.router())
    if settings.signaling_enabled:
        app.include_router(signaling.router())
    if settings.dps_enabled:
        app.include_router(dps.router())
    app.include_router(health.router())
    app.include_router(admin.router())
    return app
