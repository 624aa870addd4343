"""Errors as RFC 9457 problem documents; backend faults become 503 with the reason and a Retry-After.

Every error the API answers — its own, request validation, unknown routes and methods — is
``application/problem+json`` with ``type``, ``title``, ``status`` and ``detail``. ``type`` is stable per kind of
problem (``urn:workflow-middlelayer:problem:<slug of the title>``), so clients can branch on it. What each error of
:mod:`api.core.errors` is answered with is decided here, and only here.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.core.errors import (
    ArgoRejected,
    ArgoUnavailable,
    HTTPProblem,
    KubeRejected,
    KubeUnavailable,
    StorageUnavailable,
    StsRefused,
)
from api.web import observability

PROBLEM_TYPE = "urn:workflow-middlelayer:problem:"


def problem_type(title: str) -> str:
    return PROBLEM_TYPE + re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def problem(status: int, title: str, detail: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse(
        {"type": problem_type(title), "status": status, "title": title, "detail": detail, **extra},
        status_code=status,
        media_type="application/problem+json",
        headers=headers,
    )


UNAVAILABLE: dict[type[Exception], tuple[str, str]] = {
    StorageUnavailable: ("storage", "Storage Unavailable"),
    ArgoUnavailable: ("argo server", "Workflow Engine Unavailable"),
    KubeUnavailable: ("kubernetes", "Kubernetes Unavailable"),
}
_TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed"}


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
            for e in exc.errors()
        ]
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        detail = f"{'.'.join(first['loc'])}: {first['msg']}" if first["loc"] else str(first["msg"])
        return problem(422, "Unprocessable Content", detail, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        title = _TITLES.get(exc.status_code, "Error")
        return problem(exc.status_code, title, str(exc.detail), dict(exc.headers) if exc.headers else None)

    @app.exception_handler(HTTPProblem)
    async def _api_error(_: Request, exc: HTTPProblem) -> JSONResponse:
        return problem(exc.status, exc.title, exc.detail, exc.headers, **exc.members)

    @app.exception_handler(ArgoRejected)
    async def _argo_rejected(_: Request, exc: ArgoRejected) -> JSONResponse:
        return problem(400, "Bad Request", str(exc))

    # A backend that cannot be reached: 503 with Retry-After, and its cause in the log.
    for fault, (what, title) in UNAVAILABLE.items():

        async def _unavailable(_: Request, exc: Exception, what: str = what, title: str = title) -> JSONResponse:
            observability.unavailable(what, exc)
            return problem(503, title, str(exc), {"Retry-After": "5"})

        app.add_exception_handler(fault, _unavailable)

    @app.exception_handler(KubeRejected)
    async def _kube_rejected(_: Request, exc: KubeRejected) -> JSONResponse:
        observability.log.error("kubernetes refused a request of the API: %s", exc)
        # Our own request was refused (RBAC or admission): the provider's configuration, not the consumer's input.
        return problem(502, "Bad Gateway", f"the cluster refused a request of the API: {exc}")

    @app.exception_handler(StsRefused)
    async def _sts_refused(_: Request, exc: StsRefused) -> JSONResponse:
        observability.log.error("S3 refused a job's own keys: %s", exc)
        return problem(502, "Bad Gateway", f"the object store refused the job's own keys: {exc}")
