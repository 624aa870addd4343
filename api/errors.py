"""Errors as RFC 9457 problem documents; backend faults become 503 with the reason and a Retry-After."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from api.argo import ArgoRejected, ArgoUnavailable
from api.kube import KubeRejected, KubeUnavailable
from api.storage import StorageUnavailable


class ApiError(Exception):
    def __init__(self, status: int, title: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.headers = headers


def problem(status: int, title: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        {"status": status, "title": title, "detail": detail},
        status_code=status,
        media_type="application/problem+json",
        headers=headers,
    )


def not_found(what: str) -> ApiError:
    return ApiError(404, "Not Found", f"{what} does not exist")


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return problem(exc.status, exc.title, exc.detail, exc.headers)

    @app.exception_handler(StorageUnavailable)
    async def _storage(_: Request, exc: StorageUnavailable) -> JSONResponse:
        return problem(503, "Storage Unavailable", str(exc), {"Retry-After": "5"})

    @app.exception_handler(ArgoRejected)
    async def _argo_rejected(_: Request, exc: ArgoRejected) -> JSONResponse:
        return problem(400, "Bad Request", str(exc))

    @app.exception_handler(ArgoUnavailable)
    async def _argo(_: Request, exc: ArgoUnavailable) -> JSONResponse:
        return problem(503, "Workflow Engine Unavailable", str(exc), {"Retry-After": "5"})

    @app.exception_handler(KubeUnavailable)
    async def _kube(_: Request, exc: KubeUnavailable) -> JSONResponse:
        return problem(503, "Kubernetes Unavailable", str(exc), {"Retry-After": "5"})

    @app.exception_handler(KubeRejected)
    async def _kube_rejected(_: Request, exc: KubeRejected) -> JSONResponse:
        # Our own request was refused (RBAC or admission): the provider's configuration, not the consumer's input.
        return problem(502, "Bad Gateway", f"the cluster refused the job's environment: {exc}")
