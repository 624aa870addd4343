"""The provisioner's HTTP surface: EDC's HTTP provisioner endpoint, admin, health and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from provisioner import audit, db, identity, lifecycle, store
from provisioner.edc_client import ENDING_STATES, EdcLookupError, EdcRejected, same_url
from provisioner.kube import KubeError
from provisioner.models import AuditEvent, Grant, RegisteredAsset, Tenant
from provisioner.scheduler import Worker
from provisioner.schemas import (
    AssetView,
    AuditView,
    GrantView,
    ProvisionRequest,
    RequestType,
    TenantDetail,
    TenantView,
)
from provisioner.services import Services
from provisioner.settings import ProvisionerSettings
from provisioner.storage import StorageError
from templates import AssetError, parse_text

log = logging.getLogger(__name__)
PROVISION_PATH = "/edc/provision"
RETRY_AFTER = {"Retry-After": "5"}


def _problem(status: int, detail: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def _state(request: Request) -> tuple[Services, Worker]:
    return request.app.state.services, request.app.state.worker


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
        loop_task = asyncio.create_task(worker.reconcile_forever()) if settings.reconciler_enabled else None
        try:
            yield
        finally:
            if loop_task is not None:
                loop_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await loop_task
            await worker.close()
            if services is None:
                svc.close()

    app = FastAPI(
        title="Workflow Middle-Layer provisioner",
        description="EDC HTTP provisioner: one isolated Kubernetes/Argo tenant per consumer contract.",
        version="0.1.0",
        lifespan=lifespan,
        # The schema is in docs/; not served to every pod that can reach the port.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.services = svc
    app.state.settings = settings  # what create_app was given governs who may call (tests vary it)
    app.include_router(_edc_router())
    app.include_router(_health_router())
    app.include_router(_admin_router(settings))
    return app


def edc_caller(request: Request) -> None:
    """Only the configured connector may call: the shared key as X-Api-Key, Bearer token or last path segment."""
    settings: ProvisionerSettings = request.app.state.settings
    expected = settings.edc_inbound_key
    if expected is None:
        raise HTTPException(403, "the EDC endpoint is disabled: set WML_PROVISIONER_EDC_INBOUND_KEY on both sides")
    scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
    path_key = request.path_params.get("path_key")
    offered = [request.headers.get("x-api-key"), bearer if scheme.lower() == "bearer" else None, path_key]
    key = expected.get_secret_value().encode()
    if not any(o is not None and secrets.compare_digest(o.encode(), key) for o in offered):
        raise HTTPException(401, "unknown caller: present the connector's key", headers={"WWW-Authenticate": "Bearer"})


def _edc_router() -> APIRouter:
    router = APIRouter(tags=["edc"])

    async def provision(request: Request) -> Response:
        svc, worker = _state(request)
        response = await _handle(request, svc, worker)
        kind = getattr(request.state, "request_kind", "unknown")  # what _handle took the request for
        svc.metrics.requests.labels(type=kind[:16], code=str(response.status_code)).inc()
        return response

    summary = "EDC HttpProvisionerRequest (provision and deprovision, by `type`)"
    codes: dict[int | str, dict[str, Any]] = {c: {} for c in (200, 201, 400, 401, 403, 404, 422, 503)}
    caller = [Depends(edc_caller)]
    router.add_api_route(
        PROVISION_PATH,
        provision,
        methods=["POST"],
        summary=summary,
        responses=codes,
        dependencies=caller,
    )
    # For connectors that cannot add a header to the provisioner call (EDC's HTTP provisioner): the key as the
    # last path segment. The access log is off (cli.serve), so the key is never written anywhere.
    router.add_api_route(
        PROVISION_PATH + "/{path_key}",
        provision,
        methods=["POST"],
        summary=summary + "; key in the path",
        responses=codes,
        dependencies=caller,
    )
    return router


async def _handle(request: Request, svc: Services, worker: Worker) -> Response:
    raw = await request.body()
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        return _problem(400, f"malformed JSON: {exc}")
    if not isinstance(data, dict):
        return _problem(400, "the body must be a JSON object (EDC HttpProvisionerRequest)")
    try:
        req = ProvisionRequest.model_validate(data)
    except ValidationError as exc:
        return _problem(400, exc.errors(include_url=False, include_context=False, include_input=False))
    request.state.request_kind = str(req.kind)
    connector = svc.settings.callback_base()
    if connector is None:
        return _problem(403, "no connector configured (WML_PROVISIONER_EDC_MANAGEMENT_URL or _EDC_CALLBACK_URL)")
    if not same_url(req.callback_base, connector):
        # Callbacks carry tokens: they go to the configured connector only, so a request naming another is not EDC's.
        return _problem(403, "callbackAddress is not this provisioner's connector")
    try:
        try:
            typeless_deprovision = await asyncio.to_thread(_typeless_deprovision, svc, req)
        except EdcLookupError as exc:
            # 5xx makes EDC send the same request again, whichever it was; 200 would end a deprovision.
            log.warning("typeless request for known transfer %s, EDC not asked: %s", req.transfer_process_id, exc)
            return _problem(503, "cannot tell provision from deprovision yet (EDC's management API)", RETRY_AFTER)
        if req.kind == RequestType.DEPROVISION or typeless_deprovision:
            request.state.request_kind = str(RequestType.DEPROVISION)
            if not await asyncio.to_thread(store.known_transfer, svc.sessions, req.transfer_process_id):
                return _problem(404, f"unknown transfer process {req.transfer_process_id!r}")
            if svc.settings.verify_with_management and not typeless_deprovision:
                try:
                    state = await asyncio.to_thread(svc.edc.transfer_state, req.transfer_process_id)
                except EdcRejected as exc:
                    return _problem(403, f"not verified with the connector: {exc}")
                except EdcLookupError:
                    return _problem(503, "the connector's management API cannot be asked yet", RETRY_AFTER)
                if state not in ENDING_STATES:
                    return _problem(409, f"the connector's transfer is {state}, not ending: nothing deprovisioned")
            try:
                accepted = await asyncio.to_thread(store.accept_deprovision, svc.sessions, req)
            except store.UnknownTransfer:
                return _problem(404, f"unknown transfer process {req.transfer_process_id!r}")
            if accepted.tenant_id:
                worker.kick_tenant(accepted.tenant_id, force=True)
            # EDC reads exactly 200 as "deprovisioned"; the teardown goes on in the background.
            return JSONResponse({"grant": accepted.grant_id, "state": accepted.state}, status_code=200)
        asset = await asyncio.to_thread(svc.catalogue.resolve, req.asset_id, svc.sessions)
        if asset is None:
            return _problem(422, f"asset {req.asset_id!r} is not offered by this provisioner")
        existing = await asyncio.to_thread(store.existing_grant, svc.sessions, req)
        if existing is not None:
            return JSONResponse(
                {"grant": existing.grant_id, "state": existing.state, "tenant": existing.tenant_id}, status_code=200
            )
        try:
            who = await asyncio.to_thread(identity.resolve, svc, req.transfer_process_id, req.asset_id, req.policy)
        except EdcRejected as exc:
            return _problem(403, f"not verified with the connector: {exc}")
        except EdcLookupError as exc:
            log.warning("transfer %s not verified yet: %s", req.transfer_process_id, exc)
            return _problem(503, "the connector's management API cannot be asked yet", RETRY_AFTER)
        try:
            accepted = await asyncio.to_thread(
                store.accept_provision, svc.sessions, svc.settings, req, asset.name, svc.clock(), who
            )
        except store.TenantCollision as exc:
            log.error("refused transfer %s: %s", req.transfer_process_id, exc)
            return _problem(403, "this consumer's tenant id is taken by another consumer; the operator is alerted")
    except (DBAPIError, SQLAlchemyError) as exc:
        log.warning("database unavailable: %s", exc)
        return _problem(503, "state store unavailable, retry later", RETRY_AFTER)
    if accepted.tenant_id:
        worker.kick_tenant(accepted.tenant_id, force=accepted.created)
    else:
        worker.kick_grant(accepted.grant_id)
    body = {"grant": accepted.grant_id, "state": accepted.state, "tenant": accepted.tenant_id}
    return JSONResponse(body, status_code=201 if accepted.created else 200)


def _typeless_deprovision(svc: Services, req: ProvisionRequest) -> bool:
    """EDC up to 0.10 sends deprovision without ``type``, with the provision request's very body. A typeless
    request for a transfer we know is a deprovision when EDC's management API shows the transfer ending
    (EDC provisions only while it is ``PROVISIONING*``). Raises EdcLookupError when EDC cannot be asked;
    without a management API configured, such requests stay provisions (the operator guide says so)."""
    if req.type is not None or not svc.settings.edc_management_url:
        return False
    if not store.known_transfer(svc.sessions, req.transfer_process_id):
        return False
    state = svc.edc.transfer_state(req.transfer_process_id)
    log.info("typeless request for transfer %s in state %s", req.transfer_process_id, state)
    return state in ENDING_STATES


def require_admin(request: Request) -> None:
    """The operator's bearer token (admin routes and metrics)."""
    settings: ProvisionerSettings = request.app.state.settings
    expected = settings.admin_token
    if expected is None:
        raise HTTPException(403, "admin API disabled (set WML_PROVISIONER_ADMIN_TOKEN)")
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(token.encode(), expected.get_secret_value().encode()):
        raise HTTPException(401, "bad admin token", headers={"WWW-Authenticate": "Bearer"})


def _health_router() -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz")
    async def readyz(request: Request) -> JSONResponse:
        svc, _ = _state(request)
        checks: dict[str, str] = {}
        for name, probe in (
            ("database", lambda: db.ping(svc.engine)),
            ("kubernetes", svc.kube.version),
            ("storage", svc.storage.ping),
        ):
            try:
                await asyncio.to_thread(probe)
                checks[name] = "ok"
            except (SQLAlchemyError, KubeError, StorageError, OSError) as exc:
                log.warning("readiness: %s unavailable: %s", name, exc)
                checks[name] = "unavailable"  # details go to the log, not to whoever asks
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)

    @router.get("/metrics", dependencies=[Depends(require_admin)])
    async def metrics(request: Request) -> PlainTextResponse:
        svc, _ = _state(request)

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


def _admin_router(settings: ProvisionerSettings) -> APIRouter:
    router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)])

    @router.get("/tenants")
    async def list_tenants(request: Request, state: str | None = None) -> list[TenantView]:
        svc, _ = _state(request)

        def load() -> list[TenantView]:
            with svc.sessions() as session:
                query = select(Tenant).order_by(Tenant.created_at)
                if state:
                    query = query.where(Tenant.state == state)
                return [TenantView.model_validate(t) for t in session.scalars(query)]

        return await asyncio.to_thread(load)

    @router.get("/tenants/{tenant_id}")
    async def show_tenant(request: Request, tenant_id: str) -> TenantDetail:
        svc, _ = _state(request)

        def load() -> TenantDetail | None:
            with svc.sessions() as session:
                tenant = session.get(Tenant, tenant_id)
                if tenant is None:
                    return None
                grants = session.scalars(select(Grant).where(Grant.tenant_id == tenant_id).order_by(Grant.id))
                return TenantDetail.model_validate(
                    {
                        **TenantView.model_validate(tenant).model_dump(),
                        "grants": [GrantView.model_validate(g) for g in grants],
                    }
                )

        detail = await asyncio.to_thread(load)
        if detail is None:
            raise HTTPException(404, f"no tenant {tenant_id!r}")
        return detail

    @router.get("/grants")
    async def list_grants(
        request: Request,
        state: str | None = None,
        tenant: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    ) -> list[GrantView]:
        svc, _ = _state(request)

        def load() -> list[GrantView]:
            with svc.sessions() as session:
                query = select(Grant).order_by(Grant.id.desc()).limit(limit)
                if state:
                    query = query.where(Grant.state == state)
                if tenant:
                    query = query.where(Grant.tenant_id == tenant)
                return [GrantView.model_validate(g) for g in session.scalars(query)]

        return await asyncio.to_thread(load)

    @router.get("/audit")
    async def list_audit(
        request: Request, tenant: str | None = None, limit: Annotated[int, Query(ge=1, le=5000)] = 500
    ) -> list[AuditView]:
        svc, _ = _state(request)

        def load() -> list[AuditView]:
            with svc.sessions() as session:
                query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
                if tenant:
                    query = query.where(AuditEvent.tenant_id == tenant)
                return [AuditView.model_validate(e) for e in session.scalars(query)]

        return await asyncio.to_thread(load)

    @router.post("/tenants/{tenant_id}/teardown", status_code=202)
    async def teardown(request: Request, tenant_id: str) -> dict[str, str]:
        svc, worker = _state(request)
        if not await asyncio.to_thread(lifecycle.force_teardown, svc, tenant_id):
            raise HTTPException(404, f"no tenant {tenant_id!r}")
        worker.kick_tenant(tenant_id, force=True)
        return {"tenant": tenant_id, "state": "tearing_down"}

    @router.post("/tenants/{tenant_id}/retry", status_code=202)
    async def retry(request: Request, tenant_id: str) -> dict[str, str]:
        _, worker = _state(request)
        worker.kick_tenant(tenant_id, force=True)
        return {"tenant": tenant_id}

    @router.get("/assets")
    async def list_assets(request: Request) -> list[AssetView]:
        svc, _ = _state(request)

        def load() -> list[AssetView]:
            files = svc.catalogue.assets
            ids = {**{name: name for name in files}, **svc.catalogue.edc_map}
            views = [
                AssetView(edc_asset_id=edc_id, name=name, version=files[name].version, source="directory")
                for edc_id, name in sorted(ids.items())
                if name in files
            ]
            with svc.sessions() as session:
                for row in session.scalars(select(RegisteredAsset).order_by(RegisteredAsset.edc_asset_id)):
                    views.append(
                        AssetView(
                            edc_asset_id=row.edc_asset_id,
                            name=row.asset_name,
                            version=str(row.spec.get("version", "")),
                            source="admin",
                        )
                    )
            return views

        return await asyncio.to_thread(load)

    @router.put("/assets/{edc_asset_id}", responses={200: {}, 201: {}, 400: {}, 409: {}})
    async def register_asset(request: Request, edc_asset_id: str) -> JSONResponse:
        """Register (or replace) the WorkflowAsset offered under an EDC asset id; body: YAML or JSON."""
        svc, _ = _state(request)
        if svc.catalogue.resolve(edc_asset_id) is not None:
            return _problem(409, f"{edc_asset_id!r} comes from the asset directory; change it there")
        try:
            asset = parse_text((await request.body()).decode("utf-8"), f"assets/{edc_asset_id}")
        except UnicodeDecodeError:
            return _problem(400, "the body must be UTF-8 YAML or JSON")
        except AssetError as exc:
            return _problem(400, [{"field": p.field, "reason": p.reason} for p in exc.problems])
        spec = asset.model_dump(mode="json", by_alias=True, exclude_none=True)

        def save() -> bool:
            with svc.sessions.begin() as session:
                row = session.get(RegisteredAsset, edc_asset_id)
                created = row is None
                if row is None:
                    row = RegisteredAsset(edc_asset_id=edc_asset_id, asset_name=asset.name, spec=spec)
                    session.add(row)
                else:
                    row.asset_name, row.spec = asset.name, spec
                audit.record(
                    session, "asset_registered", edc_asset_id=edc_asset_id, name=asset.name, version=asset.version
                )
            return created

        created = await asyncio.to_thread(save)
        view = AssetView(edc_asset_id=edc_asset_id, name=asset.name, version=asset.version, source="admin")
        return JSONResponse(view.model_dump(), status_code=201 if created else 200)

    @router.delete("/assets/{edc_asset_id}", status_code=204)
    async def unregister_asset(request: Request, edc_asset_id: str) -> Response:
        svc, _ = _state(request)

        def remove() -> bool:
            with svc.sessions.begin() as session:
                row = session.get(RegisteredAsset, edc_asset_id)
                if row is None:
                    return False
                session.delete(row)
                audit.record(session, "asset_unregistered", edc_asset_id=edc_asset_id)
            return True

        if not await asyncio.to_thread(remove):
            raise HTTPException(404, f"no registered asset {edc_asset_id!r}")
        return Response(status_code=204)

    @router.post("/reconcile", status_code=202)
    async def reconcile(request: Request) -> dict[str, Any]:
        _, worker = _state(request)
        received, tenants = await worker.reconcile_once()
        return {"grants": received, "tenants": tenants}

    return router
