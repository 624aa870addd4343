"""What a request handler needs for this tenant, built once per process in the app's lifespan."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.argo import Argo
from api.catalogue import Catalogue
from api.errors import ApiError, not_found
from api.kube import Kube
from api.settings import ApiSettings
from api.storage import Storage
from templates import WorkflowAsset


@dataclass(frozen=True)
class Tenant:
    settings: ApiSettings
    storage: Storage
    argo: Argo
    catalogue: Catalogue
    kube: Kube
    start_lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # quota count + create, one start at a time

    async def asset(self, name: str) -> WorkflowAsset:
        asset = await self.catalogue.get(name)
        if asset is None:
            raise not_found(f"asset {name!r}")
        return asset


_bearer = HTTPBearer(auto_error=False, description="The token handed out in the contract's data address.")


def tenant(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Tenant:
    ctx: Tenant = request.app.state.tenant
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise ApiError(401, "Unauthorized", "missing bearer token", {"WWW-Authenticate": "Bearer"})
    presented = hashlib.sha256(credentials.credentials.encode()).hexdigest()
    # Compare against every grant's digest (no early exit), so timing tells nothing about which one matched.
    matches = [hmac.compare_digest(presented, digest) for digest in ctx.settings.token_digests]
    if not any(matches):
        raise ApiError(401, "Unauthorized", "invalid token", {"WWW-Authenticate": "Bearer"})
    return ctx


TenantDep = Annotated[Tenant, Depends(tenant)]
