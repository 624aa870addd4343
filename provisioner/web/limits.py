"""The size cap on every request body the provisioner reads, authenticated or not: refused with 413 before more
than the cap (and one chunk of the server's) is read, whether the body declares its length or streams."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(Exception):
    """Raised from ``receive`` once a streamed body passes the cap (the handler reading it stops there)."""


ErrorShape = Callable[[str, str], dict[str, Any]]  # (path, reason) -> the error body in the caller's protocol


class BodyLimit:
    """ASGI middleware: bodies over ``limit`` bytes get 413 in the shape ``shape`` gives for the request's path."""

    def __init__(self, app: ASGIApp, limit: int, shape: ErrorShape) -> None:
        self.app, self.limit, self.shape = app, limit, shape

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope.get("headers", []) if k == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, send)
            return
        seen = 0
        started = False

        async def capped() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, capped, tracked)
        except BodyTooLarge:
            if started:  # a handler that answered before reading all: nothing else can be said
                raise
            await self._refuse(scope, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        reason = f"the request body is larger than this provisioner accepts ({self.limit} bytes)"
        body = json.dumps(self.shape(scope.get("path", ""), reason)).encode()
        # Close the connection: the rest of the body is not read.
        headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})
