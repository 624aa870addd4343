"""Dependencies the route modules share: the app's services and worker, and shared-secret callers."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import SecretStr

from provisioner.core.scheduler import Scheduler
from provisioner.infra.services import Services
from provisioner.infra.settings import ProvisionerSettings

RETRY_AFTER = {"Retry-After": "5"}


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def get_worker(request: Request) -> Scheduler:
    worker: Scheduler = request.app.state.worker
    return worker


def get_settings(request: Request) -> ProvisionerSettings:
    # What create_app was given governs who may call (tests vary it per app).
    settings: ProvisionerSettings = request.app.state.settings
    return settings


ServicesDep = Annotated[Services, Depends(get_services)]
WorkerDep = Annotated[Scheduler, Depends(get_worker)]
SettingsDep = Annotated[ProvisionerSettings, Depends(get_settings)]


async def json_object(request: Request, refuse: Callable[[int, str], JSONResponse]) -> dict[str, Any] | JSONResponse:
    """The body as a JSON object (an empty body is ``{}``), or ``refuse``'s 400 in the caller's protocol's shape."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        return refuse(400, f"malformed JSON: {exc}")
    except RecursionError:  # nested deeper than the parser goes: no protocol message is anything like it
        return refuse(400, "malformed JSON: nested too deeply")
    if not isinstance(data, dict):
        return refuse(400, "the body must be a JSON object")
    return data


def offered_keys(request: Request) -> list[str]:
    """Every place a caller may put a shared key: X-Api-Key, Authorization: Bearer, the path's ``path_key``."""
    scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
    offered = [request.headers.get("x-api-key"), bearer if scheme.lower() == "bearer" else None]
    offered.append(request.path_params.get("path_key"))
    return [o for o in offered if o is not None]


def matches(offered: list[str], expected: SecretStr) -> bool:
    key = expected.get_secret_value().encode()
    # Every candidate is compared (constant time each), so the time does not tell which place was wrong.
    results = [secrets.compare_digest(o.encode(), key) for o in offered]
    return any(results)


def shared_key(pick: Callable[[ProvisionerSettings], SecretStr | None], what: str) -> Callable[[Request], None]:
    """A dependency admitting only callers that present the configured key (403 when none is configured)."""

    def check(request: Request) -> None:
        expected = pick(get_settings(request))
        if expected is None:
            raise HTTPException(403, f"the {what} endpoint is disabled: no shared key is configured")
        if not matches(offered_keys(request), expected):
            raise HTTPException(401, "unknown caller: present the shared key", headers={"WWW-Authenticate": "Bearer"})

    return check


def require_admin(request: Request) -> None:
    """The operator's bearer token (admin routes and metrics)."""
    expected = get_settings(request).admin_token
    if expected is None:
        raise HTTPException(403, "admin API disabled (set WML_PROVISIONER_ADMIN_TOKEN)")
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(token.encode(), expected.get_secret_value().encode()):
        raise HTTPException(401, "bad admin token", headers={"WWW-Authenticate": "Bearer"})
