"""Logs an operator can use: one JSON line per request with a request id (also sent back as ``X-Request-Id``),
and the cause of every 503. Tokens, keys and request bodies are never logged: a line carries the route template,
not the raw path or query, and no header but the request id."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request, Response

REQUEST_ID_HEADER = "X-Request-Id"
_VALID_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}\Z")
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
log = logging.getLogger("api")


def _stamp(record: logging.LogRecord) -> bool:
    """Each record keeps the request id of the request it was logged in (formatting happens later)."""
    if not hasattr(record, "request_id"):
        record.request_id = request_id.get()
    return True


log.addFilter(_stamp)


class JsonFormatter(logging.Formatter):
    """``{"at", "level", "logger", "msg", "request_id", …extra}`` on one line."""

    FIELDS = ("method", "route", "status", "ms", "tenant", "cause", "job")

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "at": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": getattr(record, "request_id", request_id.get()),
        }
        entry.update({k: getattr(record, k) for k in self.FIELDS if hasattr(record, k)})
        return json.dumps(entry, default=str)


def configure(level: str = "info") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def middleware(tenant: str) -> Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]:
    async def observe(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        offered = request.headers.get(REQUEST_ID_HEADER, "")
        rid = offered if _VALID_ID.match(offered) else uuid.uuid4().hex
        token = request_id.set(rid)
        started = time.perf_counter()
        try:
            response = await call_next(request)
        finally:
            request_id.reset(token)
        route = getattr(request.scope.get("route"), "path", "unmatched")
        response.headers[REQUEST_ID_HEADER] = rid
        log.info(
            "request",
            extra={
                "request_id": rid,
                "method": request.method,
                "route": route,
                "status": response.status_code,
                "ms": round((time.perf_counter() - started) * 1000, 1),
                "tenant": tenant,
            },
        )
        return response

    return observe


def unavailable(what: str, exc: BaseException) -> None:
    """Log why a request got 503: the exception and its cause, by type and message (no request data)."""
    cause = exc.__cause__ or exc.__context__
    log.warning(
        "%s unavailable: %s", what, exc, extra={"cause": f"{type(cause).__name__}: {cause}"[:500] if cause else None}
    )
