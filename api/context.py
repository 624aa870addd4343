"""What a request handler needs for this tenant, built once per process in the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.argo import Argo
from api.catalogue import Catalogue
from api.errors import ApiError, not_found, problem
from api.kube import Kube
from api.settings import ApiSettings
from api.startlock import StartLock
from api.storage import Storage
from api.tokens import TokenSet
from api.webhooks.targets import TargetPolicy
from templates import WorkflowAsset


@dataclass(frozen=True)
class Tenant:
    settings: ApiSettings
    storage: Storage
    argo: Argo
    catalogue: Catalogue
    kube: Kube
    webhook_policy: TargetPolicy
    start_lock: StartLock  # quota count + create as one step

    async def asset(self, name: str) -> WorkflowAsset:
        asset = await self.catalogue.get(name)
        if asset is None:
            raise not_found(f"asset {name!r}")
        return asset


_bearer = HTTPBearer(auto_error=False, description="The token handed out in the contract's data address.")


async def tenant(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Tenant:
    ctx: Tenant = request.app.state.tenant
    header = f"{credentials.scheme} {credentials.credentials}" if credentials else ""
    tokens: TokenSet = request.app.state.tokens
    reason = await tokens.problem(header)
    if reason:
        raise ApiError(401, "Unauthorized", reason, {"WWW-Authenticate": "Bearer"})
    return ctx


TenantDep = Annotated[Tenant, Depends(tenant)]


JOB_BODY_MAX = 1024 * 1024  # a job start is a small JSON document: parameters are capped at 32 KiB each


class TokenGate:
    """Checks the bearer token, and caps a job start's body, before any route reads a byte of the body.

    FastAPI parses a JSON body before dependencies run, so without this an unauthenticated caller could make the
    API hold any amount of JSON in memory. The route-level check (:func:`tenant`) stays: it documents the scheme.
    """

    def __init__(self, app: ASGIApp, tokens: TokenSet, public: frozenset[str]) -> None:
        self.app = app
        self.tokens = tokens
        self.public = public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        root, path = scope.get("root_path", ""), scope["path"]
        if root and path.startswith(root):
            path = path[len(root) :] or "/"
        if path in self.public:
            await self.app(scope, receive, send)
            return
        reason = await self.tokens.problem(Headers(scope=scope).get("authorization", ""))
        if reason:
            await problem(401, "Unauthorized", reason, {"WWW-Authenticate": "Bearer"})(scope, receive, send)
            return
        if scope["method"] == "POST" and path.rstrip("/") == "/v1/jobs":
            body = await _read_capped(receive, JOB_BODY_MAX)  # chunked too: EDC's data plane sends no length
            if body is None:
                detail = f"a job start is a JSON document of at most {JOB_BODY_MAX} bytes"
                await problem(413, "Content Too Large", detail)(scope, receive, send)
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, send)


async def _read_capped(receive: Receive, cap: int) -> bytes | None:
    """The whole request body, or None as soon as it grows past ``cap`` (the rest is never read)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > cap:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, then: Receive) -> Receive:
    """The body read by the gate, once; after it, whatever the connection says next (e.g. a disconnect)."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return await then()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive
