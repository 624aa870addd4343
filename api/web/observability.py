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
from typing import Any

from prometheus_client import Counter, Histogram
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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


class RequestLog:
    """Pure ASGI middleware (no per-request task or stream, unlike ``@app.middleware``): sets the request id, returns
    it as ``X-Request-Id``, logs one line per request and counts it in the Prometheus metrics."""

    def __init__(self, app: ASGIApp, tenant: str, requests: Counter, latency: Histogram) -> None:
        self.app = app
        self.tenant = tenant
        self.requests = requests
        self.latency = latency

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        offered = Headers(scope=scope).get(REQUEST_ID_HEADER, "")
        rid = offered if _VALID_ID.match(offered) else uuid.uuid4().hex
        token = request_id.set(rid)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = rid
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id.reset(token)
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", "unmatched")
            self.requests.labels(scope["method"], route, str(status)).inc()
            self.latency.labels(route).observe(elapsed)
            log.info(
                "request",
                extra={
                    "request_id": rid,
                    "method": scope["method"],
                    "route": route,
                    "status": status,
                    "ms": round(elapsed * 1000, 1),
                    "tenant": self.tenant,
                },
            )


def unavailable(what: str, exc: BaseException) -> None:
    """Log why a request got 503: the exception and its cause, by type and message (no request data)."""
    cause = exc.__cause__ or exc.__context__
    log.warning(
        "%s unavailable: %s", what, exc, extra={"cause": f"{type(cause).__name__}: {cause}"[:500] if cause else None}
    )
