"""What the routes depend on, as ``Annotated`` dependencies: the authenticated tenant (:data:`TenantDep`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.core.errors import HTTPProblem
from api.services.tenant import TenantContext
from api.web.auth import TokenSet

_bearer = HTTPBearer(auto_error=False, description="The token handed out in the contract's data address.")


async def tenant(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> TenantContext:
    ctx: TenantContext = request.app.state.tenant
    header = f"{credentials.scheme} {credentials.credentials}" if credentials else ""
    tokens: TokenSet = request.app.state.tokens
    reason = await tokens.problem(header)
    if reason:
        raise HTTPProblem(401, "Unauthorized", reason, {"WWW-Authenticate": "Bearer"})
    return ctx.scoped(tokens.assets_of(header))


TenantDep = Annotated[TenantContext, Depends(tenant)]
