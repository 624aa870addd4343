"""The operator's API (``Authorization: Bearer <admin token>``): tenants, grants, audit, assets, teardown."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import select

from provisioner.core import lifecycle
from provisioner.infra import audit
from provisioner.infra.models import AuditEvent, Grant, RegisteredAsset, Tenant
from provisioner.operator.views import AssetView, AuditView, GrantView, TenantDetail, TenantView
from provisioner.web.deps import ServicesDep, WorkerDep, require_admin
from templates import AssetError, parse_text


def _problem(status: int, detail: Any) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def router() -> APIRouter:
    router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)])

    @router.get("/tenants")
    async def list_tenants(svc: ServicesDep, state: str | None = None) -> list[TenantView]:

        def load() -> list[TenantView]:
            with svc.sessions() as session:
                query = select(Tenant).order_by(Tenant.created_at)
                if state:
                    query = query.where(Tenant.state == state)
                return [TenantView.model_validate(t) for t in session.scalars(query)]

        return await asyncio.to_thread(load)

    @router.get("/tenants/{tenant_id}")
    async def show_tenant(svc: ServicesDep, tenant_id: str) -> TenantDetail:

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
        svc: ServicesDep,
        state: str | None = None,
        tenant: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    ) -> list[GrantView]:

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
        svc: ServicesDep, tenant: str | None = None, limit: Annotated[int, Query(ge=1, le=5000)] = 500
    ) -> list[AuditView]:

        def load() -> list[AuditView]:
            with svc.sessions() as session:
                query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
                if tenant:
                    query = query.where(AuditEvent.tenant_id == tenant)
                return [AuditView.model_validate(e) for e in session.scalars(query)]

        return await asyncio.to_thread(load)

    @router.post("/tenants/{tenant_id}/teardown", status_code=202)
    async def teardown(svc: ServicesDep, worker: WorkerDep, tenant_id: str) -> dict[str, str]:
        if not await asyncio.to_thread(lifecycle.force_teardown, svc, tenant_id):
            raise HTTPException(404, f"no tenant {tenant_id!r}")
        worker.kick_tenant(tenant_id, force=True)
        return {"tenant": tenant_id, "state": "tearing_down"}

    @router.post("/tenants/{tenant_id}/retry", status_code=202)
    async def retry(worker: WorkerDep, tenant_id: str) -> dict[str, str]:
        worker.kick_tenant(tenant_id, force=True)
        return {"tenant": tenant_id}

    @router.get("/assets")
    async def list_assets(svc: ServicesDep) -> list[AssetView]:

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
    async def register_asset(request: Request, svc: ServicesDep, edc_asset_id: str) -> JSONResponse:
        """Register (or replace) the WorkflowAsset offered under an EDC asset id; body: YAML or JSON."""
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
    async def unregister_asset(svc: ServicesDep, edc_asset_id: str) -> Response:

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
    async def reconcile(worker: WorkerDep) -> dict[str, Any]:
        received, tenants = await worker.reconcile_once()
        return {"grants": received, "tenants": tenants}

    return router
