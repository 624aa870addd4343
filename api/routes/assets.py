"""Assets the tenant has contracted, and their typed upload slots (staged inputs)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import APIRouter, Path, Request, status

from api.core.errors import FormError, HTTPProblem, TooLarge, not_found, over_limit
from api.core.schemas import AssetDetail, AssetList, AssetSummary, InputInfo, OutputInfo, StagedInput, StagedInputList
from api.routes.deps import TenantDep
from api.services import archives, staging
from api.services.ledger import QuotaExceeded
from api.services.staging import check_relative_path, max_env_bytes
from api.web.multipart import boundary_of, file_field
from templates import Input, InputKind, WorkflowAsset
from templates.names import check_safe_name

router = APIRouter(prefix="/v1/assets", tags=["assets"])

NamePath = Annotated[str, Path(max_length=128, description="A name declared by the asset.")]


def _safe(value: str, what: str) -> str:
    try:
        return check_safe_name(value)
    except ValueError as exc:
        raise HTTPProblem(400, "Bad Request", f"{what} {value!r}: {exc}") from None


def _detail(asset: WorkflowAsset) -> AssetDetail:
    return AssetDetail(
        name=asset.name,
        version=asset.version,
        description=asset.description,
        image=asset.worker.image,
        resources=asset.resources.model_dump(mode="json", by_alias=True, exclude_none=True),
        timeout_seconds=asset.limits.timeout,
        inputs=[
            InputInfo(
                name=i.name,
                kind=i.kind.value,
                path=i.path,
                format=i.format,
                required=i.required,
                max_size=asset.upload_cap(i),
                description=i.description,
                keys=[k.model_dump(by_alias=True, exclude_none=True) for k in i.keys] if i.keys else None,
            )
            for i in asset.inputs
        ],
        outputs=[
            OutputInfo(name=o.name, kind=o.kind.value, path=o.path, required=o.required, description=o.description)
            for o in asset.outputs
        ],
    )


@router.get("", response_model=AssetList, summary="List contracted assets")
async def list_assets(tenant: TenantDep) -> AssetList:
    assets = [a for a in await tenant.catalogue.list() if tenant.allows(a.name)]
    return AssetList(items=[AssetSummary(name=a.name, version=a.version, description=a.description) for a in assets])


@router.get("/{asset}", response_model=AssetDetail, summary="Show an asset, its inputs and outputs")
async def get_asset(asset: NamePath, tenant: TenantDep) -> AssetDetail:
    return _detail(await tenant.asset(_safe(asset, "asset")))


async def _slot(
    tenant: TenantDep, asset_name: str, name: str, directory: bool | None = None
) -> tuple[WorkflowAsset, Input]:
    """The asset and its input ``name``; with ``directory`` set, the upload route must match the kind."""
    asset = await tenant.asset(_safe(asset_name, "asset"))
    _safe(name, "input")
    try:
        item = asset.input(name)
    except KeyError:
        raise not_found(f"input {name!r} of asset {asset.name!r}") from None
    if directory is True and item.kind is not InputKind.DIRECTORY:
        raise HTTPProblem(400, "Bad Request", f"{name!r} is not a directory input")
    if directory is False and item.kind is InputKind.DIRECTORY:
        raise HTTPProblem(
            400, "Bad Request", f"{name!r} is a directory input: upload files to .../inputs/{name}/<path>"
        )
    return asset, item


@asynccontextmanager
async def _limit(
    tenant: TenantDep, asset: WorkflowAsset, item: Input, declared: int | None, rel: str | None = None
) -> AsyncIterator[int]:
    """The bytes this upload may write (to the input's key, or one file of a directory input), reserved in the
    storage quota while it writes."""
    # An env input is read whole when a job starts: its cap is the env cap, not the general upload cap.
    cap = max_env_bytes(asset, item) if item.kind is InputKind.ENV else asset.upload_cap(item)
    if declared is not None and declared > cap:
        raise HTTPProblem(413, "Content Too Large", f"input {item.name!r} is limited to {cap} bytes")
    quota = tenant.settings.quota_storage_bytes
    try:
        # A declared length reserves just that; a stream reserves what it may grow to (up to what is free).
        key = tenant.storage.keys.staging(asset.name, item.name)
        covers = f"{key}/{rel}" if rel else key
        async with tenant.ledger.reserve(tenant.storage, quota, declared or cap, covers, declared or 1) as limit:
            yield limit
    except QuotaExceeded as exc:
        detail = f"the contract's storage quota is used up: {exc}"
        raise over_limit(413, detail, "storage_bytes", exc.quota, exc.free) from None


async def _store(
    tenant: TenantDep, asset: WorkflowAsset, item: Input, chunks: AsyncIterator[bytes], limit: int, rel: str | None
) -> StagedInput:
    inspect = archives.upload_check(tenant.storage, asset, item)
    try:
        stored = await staging.stage_input(tenant.storage, asset.name, item.name, chunks, limit, rel, inspect)
    except TooLarge as exc:
        raise HTTPProblem(413, "Content Too Large", f"input {item.name!r}: {exc}; nothing was stored") from None
    return StagedInput(name=stored.name, size=stored.size, sha256=stored.sha256, uploaded_at=stored.uploaded_at)


def _declared_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise HTTPProblem(400, "Bad Request", "invalid Content-Length") from None


_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


@router.put(
    "/{asset}/inputs/{name}",
    response_model=StagedInput,
    status_code=status.HTTP_201_CREATED,
    summary="Upload an input (raw streamed body)",
    openapi_extra=_UPLOAD_BODY,
    responses={413: {"description": "larger than the input's cap or the storage quota"}},
)
async def upload_input(asset: NamePath, name: NamePath, request: Request, tenant: TenantDep) -> StagedInput:
    wf_asset, item = await _slot(tenant, asset, name, directory=False)
    async with _limit(tenant, wf_asset, item, _declared_length(request)) as limit:
        return await _store(tenant, wf_asset, item, request.stream(), limit, None)


_FORM_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            }
        },
    }
}


@router.post(
    "/{asset}/inputs/{name}",
    response_model=StagedInput,
    status_code=status.HTTP_201_CREATED,
    summary="Upload an input (multipart form, field `file`)",
    openapi_extra=_FORM_BODY,
    responses={400: {"description": "not a form with one field `file`"}, 413: {"description": "too large"}},
)
async def upload_input_form(asset: NamePath, name: NamePath, request: Request, tenant: TenantDep) -> StagedInput:
    # The token was checked (TenantDep) before a byte of the body was read; the form is parsed as it streams.
    wf_asset, item = await _slot(tenant, asset, name, directory=False)
    try:
        boundary_of(request.headers.get("content-type"))
    except FormError as exc:
        raise HTTPProblem(400, "Bad Request", str(exc)) from None
    # The form's framing adds a few hundred bytes; the cap is applied to the file's own bytes while streaming.
    try:
        async with _limit(tenant, wf_asset, item, None) as limit:
            return await _store(
                tenant, wf_asset, item, file_field(request.headers.get("content-type"), request.stream()), limit, None
            )
    except FormError as exc:
        raise HTTPProblem(400, "Bad Request", f"{exc}; nothing was stored") from None


@router.put(
    "/{asset}/inputs/{name}/{path:path}",
    response_model=StagedInput,
    status_code=status.HTTP_201_CREATED,
    summary="Upload one file of a directory input",
    openapi_extra=_UPLOAD_BODY,
)
async def upload_directory_file(
    asset: NamePath, name: NamePath, path: str, request: Request, tenant: TenantDep
) -> StagedInput:
    wf_asset, item = await _slot(tenant, asset, name, directory=True)
    try:
        check_relative_path(path)
    except ValueError as exc:
        raise HTTPProblem(400, "Bad Request", f"path {path!r}: {exc}") from None
    async with _limit(tenant, wf_asset, item, _declared_length(request), path) as limit:
        return await _store(tenant, wf_asset, item, request.stream(), limit, path)


@router.get("/{asset}/inputs", response_model=StagedInputList, summary="List staged inputs")
async def list_inputs(asset: NamePath, tenant: TenantDep) -> StagedInputList:
    wf_asset = await tenant.asset(_safe(asset, "asset"))
    staged = await staging.staged_inputs(tenant.storage, wf_asset.name)
    return StagedInputList(
        asset=wf_asset.name,
        items=[StagedInput(name=s.name, size=s.size, sha256=s.sha256, uploaded_at=s.uploaded_at) for s in staged],
    )


@router.delete("/{asset}/inputs/{name}", status_code=status.HTTP_204_NO_CONTENT, summary="Delete a staged input")
async def delete_input(asset: NamePath, name: NamePath, tenant: TenantDep) -> None:
    wf_asset, item = await _slot(tenant, asset, name)
    if not await staging.delete_staged(tenant.storage, wf_asset.name, item.name):
        raise not_found(f"staged input {name!r}")
