"""EDC's data plane signaling (JSON-LD; EDC 0.5-0.17, Tractus-X): we are the provider's data plane. This module
only translates between its messages and :mod:`provisioner.core.grants`.

Registered at ``{self}/signaling/<key>/dataflows`` (EDC's signaling client sends no credentials, so the shared
key is a path segment; X-Api-Key or Bearer work too, for a proxy in front). Routes, relative to that base:

=================================  ======================================================================
``GET  /check``                    200 while we serve (EDC's health check)
``POST /start``                    200 ``DataFlowResponseMessage`` with the tenant API endpoint and a token
                                   of this flow; or ``provisioning: true`` and a ``provisioned`` callback
                                   later, after which EDC starts again and gets the endpoint. Idempotent per
                                   ``processId``; a start after suspend issues a new token.
``POST /{processId}/suspend``      204; the flow's token stops working, the tenant stays
``POST /{processId}/terminate``    204; the token is revoked, the tenant removed with its last flow
=================================  ======================================================================

Every message is JSON-LD and must be of its route's ``@type`` once expanded (``DataFlowStartMessage``,
``DataFlowSuspendMessage``, ``DataFlowTerminateMessage`` in the EDC namespace; see :mod:`.wire`), else 400.
4xx is final for EDC (the transfer fails), 5xx is retried (about six times over 15 s); errors carry the
reason in a ``DataFlowError`` body.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from provisioner.core import flows, grants
from provisioner.core.grants import Refusal, Refused
from provisioner.infra.connector import same_url
from provisioner.infra.states import EndedBy, Protocol
from provisioner.protocols.signaling import wire
from provisioner.web.bodies import json_body
from provisioner.web.deps import RETRY_AFTER, ServicesDep, WorkerDep, json_object, shared_key

PROTOCOL = Protocol.SIGNALING


# What each refusal of the core is to the control plane (4xx final, 5xx retried).
STATUS = {
    Refusal.NOT_OFFERED: 404,
    Refusal.NOT_VERIFIED: 403,
    Refusal.UNVERIFIABLE: 503,
    Refusal.TENANT_TAKEN: 403,
    Refusal.STORE_DOWN: 503,
    Refusal.UNKNOWN: 404,
}


def _error(status: int, message: str, details: Any = None, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(wire.error(message, details), status_code=status, headers=headers)


def _refused(refused: Refused, dataset_id: str = "") -> JSONResponse:
    reason = refused.reason
    if refused.kind is Refusal.NOT_OFFERED:
        reason = f"dataset {dataset_id!r} is not offered by this data plane"
    return _error(STATUS[refused.kind], reason, headers=RETRY_AFTER if refused.retry else None)


async def _json(request: Request) -> dict[str, Any] | JSONResponse:
    return await json_object(request, _error)


async def check() -> dict[str, str]:
    return {"status": "ok"}


async def start(request: Request, svc: ServicesDep, worker: WorkerDep) -> Response:
    body = await _json(request)
    if isinstance(body, JSONResponse):
        return body
    try:
        # JSON-LD expansion is CPU work (bounded, up to ~0.1 s for a hostile body): off the event loop
        message = await asyncio.to_thread(wire.StartMessage.parse, body)
    except wire.NotAMessage as exc:
        return _error(400, str(exc), exc.details)
    settings = svc.settings
    control = settings.signaling_control_url
    if control is None or not same_url(message.callback_address, control):
        # Our callbacks go to the configured control plane only: a start naming another is not from it.
        return _error(403, "callbackAddress is not this data plane's control plane")
    if message.flow_type.upper() != "PULL":
        return _error(400, f"flowType {message.flow_type!r}: this data plane serves PULL transfers only")
    if message.source.type and message.source.type not in settings.signaling_source_types:
        return _error(400, f"source type {message.source.type!r} is not served by this data plane")
    asset_id = message.source.properties.get("assetId") or message.dataset_id
    asked = grants.flow_request(PROTOCOL, message.process_id, asset_id, message.callback_address)
    try:
        result = await grants.start(
            svc, worker, asked, message.participant_id, exclusive=False, gone=request.is_disconnected
        )
    except Refused as refused:
        return _refused(refused, asset_id)
    svc.metrics.requests.labels(type="signaling-start", code=result.result).inc()
    if result.result is flows.StartResult.READY:
        return JSONResponse(wire.response(result.endpoint, result.token))
    if result.result is flows.StartResult.PENDING:
        return JSONResponse(wire.response())
    if result.result is flows.StartResult.ENDED:
        return _error(409, f"data flow {message.process_id!r} was terminated; a new transfer needs a new process")
    return _error(422, f"data flow {message.process_id!r} cannot be served: {result.error}")


def _ender(ended_by: EndedBy | None, message_type: str) -> Any:
    async def handle(process_id: str, request: Request, svc: ServicesDep, worker: WorkerDep) -> Response:
        body = await _json(request)
        if isinstance(body, JSONResponse):
            return body
        try:
            await asyncio.to_thread(wire.FlowMessage.parse, body, message_type)
        except wire.NotAMessage as exc:
            return _error(400, str(exc), exc.details)
        try:
            if ended_by is None:
                await grants.suspend(svc, worker, PROTOCOL, process_id)
            else:
                await grants.end(svc, worker, PROTOCOL, process_id, ended_by)
        except Refused as refused:
            return _refused(refused)
        return Response(status_code=204)

    return handle


def router() -> APIRouter:
    api = APIRouter(tags=["signaling"])
    caller = [Depends(shared_key(lambda s: s.signaling_inbound_key, "signaling"))]
    for base in ("/signaling/dataflows", "/signaling/{path_key}/dataflows"):
        api.add_api_route(f"{base}/check", check, methods=["GET"], dependencies=caller)
        start_body, flow_body = json_body(wire.StartMessage), json_body(wire.FlowMessage)
        api.add_api_route(f"{base}/start", start, methods=["POST"], dependencies=caller, openapi_extra=start_body)
        api.add_api_route(
            f"{base}/{{process_id}}/suspend",
            _ender(None, wire.SUSPEND),
            methods=["POST"],
            dependencies=caller,
            openapi_extra=flow_body,
        )
        api.add_api_route(
            f"{base}/{{process_id}}/terminate",
            _ender(EndedBy.TERMINATE, wire.TERMINATE),
            methods=["POST"],
            dependencies=caller,
            openapi_extra=flow_body,
        )
    return api
