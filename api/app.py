"""The consumer API of one tenant: ``create_app(settings)``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import httpx
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse
from prometheus_client import CollectorRegistry, Counter, Histogram

from api.backends.argo import Argo
from api.backends.claims import WorkflowClaims
from api.backends.kube import TenantKube
from api.backends.leasebook import LeaseBook
from api.backends.s3 import ObjectStore, make_client
from api.backends.startlock import StartLock
from api.backends.sts import MinioSts
from api.core.schemas import Problem
from api.core.tokens import parse_scopes
from api.routes import assets, health, jobs, usage, webhook
from api.routes.deps import TenantDep
from api.services import sweeper
from api.services.catalogue import Catalogue
from api.services.finishing import Finisher
from api.services.jobkeys import JobKeys
from api.services.ledger import StorageLedger
from api.services.outputs import SealOnce
from api.services.tenant import TenantContext
from api.services.webhooks.dispatcher import Dispatcher
from api.services.webhooks.targets import TargetPolicy
from api.settings import ApiSettings, StartLockMode
from api.web import observability, problems
from api.web.auth import TokenGate, TokenSet
from templates.labels import ANNOTATION_RESERVATION_PREFIX, ANNOTATION_SEALING
from templates.names import API_STORAGE_LEASE

DESCRIPTION = """\
Run the provider's contracted WorkflowAssets: upload inputs, start jobs, follow logs, download outputs.

Authenticate every call but health with `Authorization: Bearer <token>` (the token of your contract's
data address). Job states follow GA4GH TES: QUEUED, INITIALIZING, RUNNING, COMPLETE, EXECUTOR_ERROR,
SYSTEM_ERROR, CANCELED.
"""


PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})
COMMON_ERRORS = {
    "422": "the request does not match this operation (problem document with `errors`)",
    "503": "S3, Argo Server or Kubernetes is unavailable: retry after `Retry-After` seconds",
}


def create_app(settings: ApiSettings) -> FastAPI:
    registry = CollectorRegistry()
    requests = Counter("wml_api_requests", "HTTP requests", ["method", "route", "status"], registry=registry)
    latency = Histogram("wml_api_request_seconds", "HTTP request latency", ["route"], registry=registry)
    scopes = parse_scopes(settings.token_scopes.get_secret_value())
    tokens = TokenSet(settings.token_digests, settings.token_refresh_seconds, seed_scopes=scopes)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        s3 = make_client(
            settings.s3_endpoint_url,
            settings.s3_access_key.get_secret_value(),
            settings.s3_secret_key.get_secret_value(),
            settings.s3_region,
        )
        timeout = httpx.Timeout(30.0, connect=5.0)
        # Webhooks: no proxy from the environment, no redirects (a redirect could point anywhere), short limits.
        hooks_timeout = httpx.Timeout(settings.webhook_timeout_seconds)
        async with (
            httpx.AsyncClient(verify=settings.argo_verify_tls, timeout=timeout) as session,
            # No kept-alive connections: the pool is keyed by the pinned address, and a connection whose certificate
            # was checked for one host must not carry another host's event.
            httpx.AsyncClient(
                timeout=hooks_timeout,
                follow_redirects=False,
                trust_env=False,
                limits=httpx.Limits(max_keepalive_connections=0),
            ) as hooks,
            aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=30, connect=5),
                connector=aiohttp.TCPConnector(ssl=settings.argo_verify_tls),
            ) as starts,
        ):
            argo = Argo(settings, session, starts)
            kube = TenantKube(settings)
            sts = MinioSts(
                settings.s3_endpoint_url,
                settings.exec_s3_access_key.get_secret_value(),
                settings.exec_s3_secret_key.get_secret_value(),
                settings.s3_region,
            )
            job_keys = JobKeys(sts, kube, settings.s3_bucket, settings.keys, settings.tenant)
            if settings.token_secret:
                tokens.reader = kube.token_digests
            app.state.tenant = TenantContext(
                settings=settings,
                storage=ObjectStore(
                    s3,
                    settings.s3_bucket,
                    settings.keys,
                    public=make_client(
                        settings.s3_public_url,
                        settings.s3_access_key.get_secret_value(),
                        settings.s3_secret_key.get_secret_value(),
                        settings.s3_region,
                    )
                    if settings.s3_public_url
                    else None,
                ),
                argo=argo,
                catalogue=Catalogue(argo),
                kube=kube,
                webhook_policy=TargetPolicy.of(settings.webhook_allow_http, settings.webhook_allowed_networks),
                start_lock=StartLock(settings.start_lock, kube),
                job_keys=job_keys,
                sealing=SealOnce(WorkflowClaims(kube, ANNOTATION_SEALING)),
                ledger=StorageLedger(
                    # several replicas (the start lock says so) share one book of the writes under way
                    LeaseBook(kube, API_STORAGE_LEASE, ANNOTATION_RESERVATION_PREFIX)
                    if settings.start_lock is StartLockMode.LEASE
                    else None
                ),
            )
            background = [
                asyncio.create_task(Dispatcher(app.state.tenant, hooks, app.state.tenant.webhook_policy).run()),
                asyncio.create_task(sweeper.sweep_forever(app.state.tenant)),
                asyncio.create_task(Finisher(app.state.tenant, job_keys).run()),
            ]
            try:
                yield
            finally:
                for task in background:
                    task.cancel()
                for task in background:
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                await kube.aclose()
                await sts.aclose()

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
    app.state.tokens = tokens
    problems.install(app)
    for router in (health.router, assets.router, jobs.router, usage.router, webhook.router):
        app.include_router(router)

    def schema_with_problems() -> dict[str, Any]:
        """FastAPI's schema, with every error response documented as the problem document it is."""
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        for unused in ("HTTPValidationError", "ValidationError"):
            components.pop(unused, None)
        content = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
        for path, operations in schema.get("paths", {}).items():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                common = dict(COMMON_ERRORS)
                if path not in PUBLIC_PATHS:
                    common["401"] = "missing or invalid bearer token"
                for code, description in common.items():
                    responses.setdefault(code, {"description": description})
                for code, response in responses.items():
                    if code[0] in "45":
                        response["content"] = content
        app.openapi_schema = schema
        return schema

    app.openapi = schema_with_problems  # type: ignore[method-assign]

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(_: TenantDep) -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False)
    async def docs(_: TenantDep) -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=f"{settings.root_path}/openapi.json", title=app.title)

    # The gate is innermost: requests are logged and counted even when it refuses them.
    app.add_middleware(TokenGate, tokens=tokens, public=PUBLIC_PATHS)
    app.add_middleware(observability.RequestLog, tenant=settings.tenant, requests=requests, latency=latency)

    return app
