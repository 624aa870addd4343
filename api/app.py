"""The consumer API of one tenant: ``create_app(settings)``."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from prometheus_client import CollectorRegistry, Counter, Histogram

from api import errors
from api.argo import Argo
from api.catalogue import Catalogue
from api.context import Tenant, TenantDep
from api.kube import Kube
from api.routes import assets, health, jobs
from api.settings import ApiSettings
from api.storage import Storage, make_filesystem

DESCRIPTION = """\
Run the provider's contracted WorkflowAssets: upload inputs, start jobs, follow logs, download outputs.

Authenticate every call but health with `Authorization: Bearer <token>` (the token of your contract's
data address). Job states follow GA4GH TES: QUEUED, INITIALIZING, RUNNING, COMPLETE, EXECUTOR_ERROR,
SYSTEM_ERROR, CANCELED.
"""


def create_app(settings: ApiSettings) -> FastAPI:
    registry = CollectorRegistry()
    requests = Counter("wml_api_requests", "HTTP requests", ["method", "route", "status"], registry=registry)
    latency = Histogram("wml_api_request_seconds", "HTTP request latency", ["route"], registry=registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        fs = make_filesystem(
            settings.s3_endpoint_url,
            settings.s3_access_key.get_secret_value(),
            settings.s3_secret_key.get_secret_value(),
            settings.s3_region,
        )
        timeout = httpx.Timeout(30.0, connect=5.0)
        async with httpx.AsyncClient(verify=settings.argo_verify_tls, timeout=timeout) as session:
            argo = Argo(settings, session)
            kube = Kube(settings)
            app.state.tenant = Tenant(
                settings=settings,
                storage=Storage(fs, settings.s3_bucket, settings.keys),
                argo=argo,
                catalogue=Catalogue(argo),
                kube=kube,
            )
            try:
                yield
            finally:
                await kube.aclose()

    app = FastAPI(
        title="Workflow Middle-Layer consumer API",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
        root_path=settings.root_path,
        # The schema and its UI are served behind the token (below), like every route but health.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.registry = registry
    errors.install(app)
    for router in (health.router, assets.router, jobs.router):
        app.include_router(router)

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(_: TenantDep) -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False)
    async def docs(_: TenantDep) -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=f"{settings.root_path}/openapi.json", title=app.title)

    @app.middleware("http")
    async def observe(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = getattr(request.scope.get("route"), "path", "unmatched")
        requests.labels(request.method, route, str(response.status_code)).inc()
        latency.labels(route).observe(time.perf_counter() - started)
        return response

    return app
