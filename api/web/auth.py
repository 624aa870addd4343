"""The live set of bearer-token digests this tenant API accepts, one per active grant.

Seeded from ``WML_API_TOKEN_SHA256`` and kept current from the Secret the provisioner writes
(``WML_API_TOKEN_SECRET``, default ``wml-api-tokens``), so a new grant's token works on its first request and
the pods never restart for it: a token not in the set makes the API re-read the Secret (at most every
``MISS_INTERVAL`` seconds, so bad tokens cannot hammer the Kubernetes API), and a set older than
``token_refresh_seconds`` is re-read before it is used, which bounds how long a revoked token keeps working.
When the Secret cannot be read, the last set stays in force.

:class:`TokenGate` checks the token (and caps a job start's body) before any route reads a byte of the body.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.core.tokens import LiveTokens
from api.web.problems import problem

log = logging.getLogger(__name__)

MISS_INTERVAL = 0.2


Reader = Callable[[], Awaitable[LiveTokens | None]]


def token_problem(authorization: str, digests: tuple[str, ...]) -> str | None:
    """Why an ``Authorization`` header is refused, or None when it carries a live grant's token."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return "missing bearer token"
    presented = hashlib.sha256(token.encode()).hexdigest()
    # Compare against every grant's digest (no early exit), so timing tells nothing about which one matched.
    if not any([hmac.compare_digest(presented, digest) for digest in digests]):
        return "invalid token"
    return None


class TokenSet:
    def __init__(
        self,
        seed: tuple[str, ...],
        refresh_seconds: float,
        reader: Reader | None = None,
        clock: Callable[[], float] = time.monotonic,
        seed_scopes: Mapping[str, frozenset[str]] | None = None,
    ) -> None:
        self.digests = seed
        self.scopes: Mapping[str, frozenset[str]] | None = seed_scopes
        self.refresh_seconds = refresh_seconds
        self.reader = reader
        self.clock = clock
        self.read_at = clock()
        self._lock = asyncio.Lock()

    async def _refresh(self, older_than: float) -> None:
        if self.reader is None:
            return
        async with self._lock:
            if self.clock() - self.read_at < older_than:
                return  # another request refreshed it meanwhile
            # Stamped before the read: what it returns is at least as new as this moment, no newer.
            self.read_at = self.clock()
            try:
                fresh = await self.reader()
            except Exception as exc:  # the Kubernetes API is down: the last set stays in force
                log.warning("token set not refreshed: %s", exc)
                fresh = None
            if fresh is not None:
                self.digests, self.scopes = fresh.digests, fresh.scopes

    def assets_of(self, authorization: str) -> frozenset[str] | None:
        """The assets an accepted token's contract covers; None: every asset (no scopes published)."""
        if self.scopes is None:
            return None
        _, _, token = authorization.partition(" ")
        return self.scopes.get(hashlib.sha256(token.encode()).hexdigest(), frozenset())

    async def problem(self, authorization: str) -> str | None:
        """Why ``authorization`` is refused (None: accepted), against a set no older than the refresh period."""
        if self.clock() - self.read_at >= self.refresh_seconds:
            await self._refresh(self.refresh_seconds)
        reason = token_problem(authorization, self.digests)
        if reason == "invalid token":
            await self._refresh(MISS_INTERVAL)
            reason = token_problem(authorization, self.digests)
        return reason


JOB_BODY_MAX = 1024 * 1024  # a job start is a small JSON document: parameters are capped at 32 KiB each


class TokenGate:
    """Checks the bearer token, and caps a job start's body, before any route reads a byte of the body.

    FastAPI parses a JSON body before dependencies run, so without this an unauthenticated caller could make the
    API hold any amount of JSON in memory. The route-level check (:func:`api.routes.deps.tenant`) stays: it
    documents the scheme.
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
