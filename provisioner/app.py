"""The provisioner's application and composition root: :func:`build_services` makes each protocol's client and
hands them to :class:`~provisioner.infra.services.Services`; :func:`create_app` puts the protocol adapters, admin
and health routes on one app, with the reconciler and the data plane registrar in its lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, Response

from provisioner.core.scheduler import Scheduler
from provisioner.infra import db
from provisioner.infra.notify import Notifier
from provisioner.infra.services import Services
from provisioner.infra.settings import ProvisionerSettings
from provisioner.infra.states import Protocol
from provisioner.operator import admin, health
from provisioner.protocols.dps import routes as dps
from provisioner.protocols.dps import wire as dps_wire
from provisioner.protocols.dps.client import DpsClient
from provisioner.protocols.http_provisioner import routes as http_provisioner
from provisioner.protocols.http_provisioner.client import HttpProvisionerClient
from provisioner.protocols.http_provisioner.routes import PROVISION_PATH
from provisioner.protocols.registrar import Registrar
from provisioner.protocols.signaling import routes as signaling
from provisioner.protocols.signaling import wire as signaling_wire
from provisioner.protocols.signaling.client import SignalingClient
from provisioner.web.limits import BodyLimit

__all__ = ["PROVISION_PATH", "build_services", "create_app"]
log = logging.getLogger(__name__)


def build_services(settings: ProvisionerSettings, **overrides: object) -> Services:
    """Services with every protocol's client as its notifier (and the signaling protocols' registrations)."""
    signaling_client, dps_client = SignalingClient(settings), DpsClient(settings)
    notifiers: dict[Protocol, Notifier] = {
        Protocol.HTTP_PROVISIONER: HttpProvisionerClient(settings),
        Protocol.SIGNALING: signaling_client,
        Protocol.DPS: dps_client,
    }
    registrations = {Protocol.SIGNALING: signaling_client.register, Protocol.DPS: dps_client.register}
    return Services.build(settings, notifiers, registrations, **overrides)


def create_app(
    settings: ProvisionerSettings | None = None, services: Services | None = None, migrate: bool = True
) -> FastAPI:
    settings = settings or ProvisionerSettings()
    svc = services or build_services(settings)
    if not settings.edc_management_url:
        log.warning(
            "WML_PROVISIONER_EDC_MANAGEMENT_URL is not set: deprovision requests of EDC <= 0.10 (no `type`) "
            "cannot be recognised and are taken for provision repeats"
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if migrate:
            await asyncio.to_thread(db.migrate, svc.engine)
        worker = Scheduler(svc)
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
        "for EDC's data plane signaling and for the Eclipse Data Plane Signaling API (DPS).",
        version="0.2.0",
        lifespan=lifespan,
        # The schema is in docs/; not served to every pod that can reach the port.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )

    @app.exception_handler(HTTPException)
    async def protocol_errors(request: Request, exc: HTTPException) -> Response:
        # Refusals before a handler runs (no key, a bad token) in the shape of the caller's protocol.
        shape = _protocol_error(request.url.path, str(exc.detail))
        if shape is None:
            return await http_exception_handler(request, exc)
        return JSONResponse(shape, status_code=exc.status_code, headers=exc.headers)

    app.add_middleware(
        BodyLimit,
        limit=settings.request_max_bytes,
        shape=lambda path, reason: _protocol_error(path, reason) or {"detail": reason},
    )

    app.state.services = svc
    app.state.settings = settings  # what create_app was given governs who may call (tests vary it)
    app.include_router(http_provisioner.router())
    if settings.signaling_enabled:
        app.include_router(signaling.router())
    if settings.dps_enabled:
        app.include_router(dps.router())
    app.include_router(health.router())
    app.include_router(admin.router())
    return app


def _protocol_error(path: str, reason: str) -> dict[str, Any] | None:
    """An error in the shape of the protocol whose route ``path`` is (None: FastAPI's own)."""
    if path.startswith("/signaling/"):
        return signaling_wire.error(reason)
    if path.startswith("/dps/"):
        return dps_wire.error(reason)
    return None
