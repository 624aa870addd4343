"""Eclipse Data Plane Signaling (DPS; plain JSON; EDC >= 0.18, spec v1.0-RC2 and RC3): we are the provider's
data plane for PULL transfers. This module only translates between its messages and
:mod:`provisioner.core.grants`. Routes, relative to our registered endpoint ``{self}/dps``:

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
from typing import Any

import jwt
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from provisioner.core import flows, grants
from provisioner.core.grants import Refusal, Refused
from provisioner.infra.connector import same_url
from provisioner.infra.states import EndedBy, GrantState, Protocol
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


def flow_state(state: GrantState, ended_by: EndedBy | None) -> wire.FlowState:
    """The flow state the specification defines for a grant: a flow the control plane ended with ``completed`` is
    COMPLETED, any other end TERMINATED."""
    ending = state in (GrantState.DEPROVISIONING, GrantState.DEPROVISIONED)
    return wire.FlowState.COMPLETED if ending and ended_by is EndedBy.COMPLETED else FLOW_STATES[state]


# What each refusal of the core is to the control plane.
STATUS = {
    Refusal.NOT_OFFERED: 404,
    Refusal.EXISTS: 409,
    Refusal.NOT_VERIFIED: 403,
    Refusal.UNVERIFIABLE: 503,
    Refusal.TENANT_TAKEN: 403,
    Refusal.STORE_DOWN: 503,
    Refusal.UNKNOWN: 404,
    Refusal.NOT_SUSPENDED: 409,
}


def _error(status: int, message: str, details: Any = None, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(wire.error(message, details), status_code=status, headers=headers)


def _refused(refused: Refused, flow_id: str, dataset_id: str = "") -> JSONResponse:
    reason = refused.reason
    if refused.kind is Refusal.NOT_OFFERED:
        reason = f"dataset {dataset_id!r} is not offered by this data plane"
    elif refused.kind is Refusal.NOT_SUSPENDED and refused.state is not None:
        reason = f"data flow {flow_id!r} is {FLOW_STATES[refused.state]}, not suspended"
    return _error(STATUS[refused.kind], reason, headers=RETRY_AFTER if refused.retry else None)


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
    asked = grants.flow_request(PROTOCOL, message.process_id, message.dataset_id, control, message.kind)
    try:
        result = await grants.start(
            svc, worker, asked, message.counter_party_id, exclusive=True, gone=request.is_disconnected
        )
    except Refused as refused:
        return _refused(refused, message.process_id, message.dataset_id)
    svc.metrics.requests.labels(type="dps-start", code=result.result).inc()
    return _started(message.message_id, message.process_id, result, message.kind)


async def resume(flow_id: str, request: Request, svc: ServicesDep, worker: WorkerDep) -> Response:
    body = await _json(request)
    if isinstance(body, JSONResponse):
        return body
    try:
        message = wire.FlowMessage.model_validate(body)
    except ValidationError as exc:
        return _error(400, "not a DataFlowResumeMessage", exc.errors(include_url=False, include_input=False))
    try:
        result = await grants.resume(svc, worker, PROTOCOL, flow_id, request.is_disconnected)
    except Refused as refused:
        return _refused(refused, flow_id)
    return _started(message.message_id, flow_id, result, result.profile)


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
            if ended_by is None:
                await grants.suspend(svc, worker, PROTOCOL, flow_id)
            else:
                await grants.end(svc, worker, PROTOCOL, flow_id, ended_by)
        except Refused as refused:
            return _refused(refused, flow_id)
        return Response(status_code=200)

    return handle


async def status(flow_id: str, svc: ServicesDep) -> Response:
    try:
        grant = await asyncio.to_thread(grants.look_up, svc, PROTOCOL, flow_id)
    except Refused as refused:
        return _refused(refused, flow_id)
    return JSONResponse(wire.status_response(flow_id, flow_state(grant.state, grant.ended_by)))


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
