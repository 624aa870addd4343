"""Eclipse Data Plane Signaling (plain JSON; EDC >= 0.18, spec v1.0-RC2 and RC3): we are the provider's data
plane for PULL transfers. Routes, relative to our registered endpoint ``{self}/dps``:

=====================================  ===============================================================
``POST /dataflows/start``              200 ``STARTED`` with the DataAddress (tenant API + this flow's
                                       token), or 202 ``STARTING`` + ``Location`` and a ``started``
                                       callback later; a second start of one process is 409
``POST /dataflows/{id}/suspend``       200; the token stops working, the tenant stays
``POST /dataflows/{id}/resume``        200 ``STARTED`` with a new token (or ``STARTING`` + callback)
``POST /dataflows/{id}/terminate``     200; the flow ends (the tenant with its last flow)
``POST /dataflows/{id}/completed``     200; the same, ended by the control plane's completion
``GET  /dataflows/{id}/status``        200 ``DataFlowStatusResponseMessage``
``POST /dataflows/prepare``            400: consumer-side preparation is not this data plane's role
=====================================  ===============================================================

Callers: with ``dps_control_plane_jwks`` set (the oauth2_client_credentials profile), a bearer JWT signed by the
control plane (``sub`` = its id, ``aud`` = our data plane id); otherwise the shared signaling key.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import jwt
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from provisioner.core import flows, store
from provisioner.infra.connector import same_url
from provisioner.infra.models import Grant
from provisioner.infra.services import Services
from provisioner.infra.states import Delivery, EndedBy, GrantState, Protocol
from provisioner.protocols.dps import wire
from provisioner.web.bodies import json_body
from provisioner.web.deps import (
    RETRY_AFTER,
    ServicesDep,
    WorkerDep,
    get_settings,
    json_object,
    matches,
    offered_keys,
)

log = logging.getLogger(__name__)
PROTOCOL = Protocol.DPS
BASE = "/dps/dataflows"

# Our grant states as the flow states a control plane reads.
FLOW_STATES = {
    GrantState.RECEIVED: wire.FlowState.STARTING,
    GrantState.PROVISIONING: wire.FlowState.STARTING,
    GrantState.READY: wire.FlowState.STARTING,
    GrantState.PROVISIONED: wire.FlowState.STARTED,
    GrantState.SUSPENDED: wire.FlowState.SUSPENDED,
    GrantState.DEPROVISIONING: wire.FlowState.TERMINATED,
    GrantState.DEPROVISIONED: wire.FlowState.TERMINATED,
    GrantState.FAILED: wire.FlowState.TERMINATED,
}


def _error(status: int, message: str, details: Any = None, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(wire.error(message, details), status_code=status, headers=headers)


def _verified(token: str, jwks: str, audience: str) -> dict[str, Any]:
    """The claims of a bearer JWT signed by one of the control plane's keys, each key with its own algorithm
    (so a key of another type is a refusal, never an error); 401 otherwise."""
    refusal = "bearer token refused: no key of the control plane verifies it"
    try:
        keys = jwt.PyJWKSet.from_json(jwks).keys
        kid = jwt.get_unverified_header(token).get("kid")
    except (jwt.PyJWTError, ValueError) as exc:
        raise HTTPException(401, f"bearer token refused: {exc}", {"WWW-Authenticate": "Bearer"}) from None
    for key in [k for k in keys if kid in (None, k.key_id)] or list(keys):
        try:
            return jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm_name],
                audience=audience,
                options={"require": ["iss", "sub", "aud", "iat", "exp"]},
            )
        except jwt.InvalidSignatureError:
            continue
        except (jwt.PyJWTError, TypeError, ValueError) as exc:
            refusal = f"bearer token refused: {exc}"
    raise HTTPException(401, refusal, {"WWW-Authenticate": "Bearer"})


def control_plane(request: Request) -> None:
    """OAuth2 profile: a JWT the control plane signed for us; else the shared signaling key."""
    settings = get_settings(request)
    if settings.dps_control_plane_jwks:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise HTTPException(401, "a bearer token of the control plane is required", {"WWW-Authenticate": "Bearer"})
        claims = _verified(token, settings.dps_control_plane_jwks, settings.signaling_dataplane_id)
        if claims.get("sub") != settings.dps_control_plane_id:
            raise HTTPException(403, "the token's subject is not this data plane's control plane")
        return
    expected = settings.signaling_inbound_key
    if expected is None:
        raise HTTPException(403, "the DPS endpoint is disabled: configure a shared key or the control plane's JWKS")
    if not matches(offered_keys(request), expected):
        raise HTTPException(401, "unknown caller: present the shared key", {"WWW-Authenticate": "Bearer"})


async def _json(request: Request) -> dict[str, Any] | JSONResponse:
    return await json_object(request, _error)


def _started(message_id: str, flow_id: str, result: flows.Started, profile: str) -> Response:
    if result.result is flows.StartResult.READY:
        address = wire.data_address(result.endpoint, result.token, wire.endpoint_type(profile))
        return JSONResponse(wire.status(message_id, flow_id, wire.FlowState.STARTED, address))
    if result.result is flows.StartResult.PENDING:
        return JSONResponse(
            wire.status(message_id, flow_id, wire.FlowState.STARTING),
            status_code=202,
            headers={"Location": f"{BASE}/{flow_id}/status"},
        )
    if result.result is flows.StartResult.ENDED:
        return _error(409, f"data flow {flow_id!r} was terminated")
    return _error(422, f"data flow {flow_id!r} cannot be served: {result.error}")


async def start(request: Request, svc: ServicesDep, worker: WorkerDep) -> Response:
    body = await _json(request)
    if isinstance(body, JSONResponse):
        return body
    try:
        message = wire.StartMessage.model_validate(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        return _error(400, "not a DataFlowStartMessage", errors)
    settings = svc.settings
    if message.kind not in settings.dps_profiles:
        return _error(400, f"transfer type/profile {message.kind!r} is not served by this data plane")
    if message.data_address:
        return _error(400, "a PULL start carries no DataAddress: this data plane makes one")
    control = settings.dps_control_url
    if control is None:
        return _error(403, "no control plane configured for this data plane")
    if message.callback_address is not None and not same_url(message.callback_address, control):
        return _error(403, "callbackAddress is not this data plane's control plane")
    claim = flows.claim(PROTOCOL, message.process_id, message.dataset_id, control, message.kind)
    try:
        result = await flows.start(
            svc, worker, claim, message.counter_party_id, exclusive=True, gone=request.is_disconnected
        )
    except flows.Refused as refused:
        return _error(refused.status, refused.reason, headers=RETRY_AFTER if refused.retry else None)
    svc.metrics.requests.labels(type="dps-start", code=result.result).inc()
    return _started(message.message_id, message.process_id, result, message.kind)


def _flow(svc: Services, flow_id: str) -> Grant | None:
    return store.find_grant(svc.sessions, PROTOCOL, flow_id)


async def resume(flow_id: str, request: Request, svc: ServicesDep, worker: WorkerDep) -> Response:
    body = await _json(request)
    if isinstance(body, JSONResponse):
        return body
    try:
        message = wire.FlowMessage.model_validate(body)
        grant = await asyncio.to_thread(store.resume, svc.sessions, PROTOCOL, flow_id, Delivery.RESPONSE)
        if grant is None:
            return _error(404, f"unknown data flow {flow_id!r}")
        if grant.state not in (GrantState.PROVISIONING, GrantState.READY, GrantState.PROVISIONED):
            return _error(409, f"data flow {flow_id!r} is {FLOW_STATES[GrantState(grant.state)]}, not suspended")
        if grant.tenant_id:
            worker.kick_tenant(grant.tenant_id, due=True)
        result = await flows.await_ready(
            svc, worker, grant.id, False, svc.settings.signaling_start_wait_seconds, request.is_disconnected
        )
    except ValidationError as exc:
        return _error(400, "not a DataFlowResumeMessage", exc.errors(include_url=False, include_input=False))
    except (DBAPIError, SQLAlchemyError):
        return _error(503, "state store unavailable, retry later", headers=RETRY_AFTER)
    return _started(message.message_id, flow_id, result, str((grant.policy or {}).get("profile", "")))


def _ender(ended_by: EndedBy | None) -> Any:
    async def handle(flow_id: str, request: Request, svc: ServicesDep, worker: WorkerDep) -> Response:
        body = await _json(request)
        if isinstance(body, JSONResponse):
            return body
        try:
            wire.FlowMessage.model_validate(body)
        except ValidationError as exc:
            return _error(400, "malformed message", exc.errors(include_url=False, include_input=False))
        try:
            grant = await asyncio.to_thread(flows.stop, svc, PROTOCOL, flow_id, ended_by)
        except (DBAPIError, SQLAlchemyError):
            return _error(503, "state store unavailable, retry later", headers=RETRY_AFTER)
        known, tenant_id = grant is not None, grant.tenant_id if grant else None
        if not known:
            return _error(404, f"unknown data flow {flow_id!r}")
        if tenant_id:
            worker.kick_tenant(tenant_id, due=True)
        return Response(status_code=200)

    return handle


async def status(flow_id: str, svc: ServicesDep) -> Response:
    try:
        grant = await asyncio.to_thread(_flow, svc, flow_id)
    except (DBAPIError, SQLAlchemyError):
        return _error(503, "state store unavailable, retry later", headers=RETRY_AFTER)
    if grant is None:
        return _error(404, f"unknown data flow {flow_id!r}")
    return JSONResponse(wire.status_response(flow_id, FLOW_STATES[GrantState(grant.state)]))


async def prepare() -> Response:
    return _error(400, "this data plane serves provider-side PULL transfers; it prepares no consumer data flows")


def router() -> APIRouter:
    api = APIRouter(tags=["dps"], dependencies=[Depends(control_plane)])
    start_body, flow_body = json_body(wire.StartMessage), json_body(wire.FlowMessage, required=False)
    api.add_api_route(f"{BASE}/start", start, methods=["POST"], openapi_extra=start_body)
    api.add_api_route(f"{BASE}/prepare", prepare, methods=["POST"], openapi_extra=start_body)
    api.add_api_route(f"{BASE}/{{flow_id}}/suspend", _ender(None), methods=["POST"], openapi_extra=flow_body)
    api.add_api_route(f"{BASE}/{{flow_id}}/resume", resume, methods=["POST"], openapi_extra=flow_body)
    api.add_api_route(
        f"{BASE}/{{flow_id}}/terminate", _ender(EndedBy.TERMINATE), methods=["POST"], openapi_extra=flow_body
    )
    api.add_api_route(
        f"{BASE}/{{flow_id}}/completed", _ender(EndedBy.COMPLETED), methods=["POST"], openapi_extra=flow_body
    )
    api.add_api_route(f"{BASE}/{{flow_id}}/status", status, methods=["GET"])
    return api
