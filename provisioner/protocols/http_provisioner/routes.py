"""EDC's control-plane HTTP provisioner (EDC <= 0.15): ``POST /edc/provision``, provision and deprovision.

The connector authenticates with the shared key (header, or the last path segment for EDC's provisioner,
which cannot send headers). This module only translates: the request becomes a
:class:`~provisioner.core.store.TransferRequest` for :mod:`provisioner.core.grants` (which verifies the consumer
with the connector's management API before anything is stored), and its outcome becomes what EDC reads:
201/200 accepted, 4xx final, 503 + Retry-After retried. Callbacks go to the configured connector only
(:mod:`.client`).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from provisioner.core import grants
from provisioner.core.grants import Refusal, Refused
from provisioner.core.scheduler import Scheduler
from provisioner.core.store import TransferRequest
from provisioner.infra.connector import same_url
from provisioner.infra.services import Services
from provisioner.infra.states import Protocol
from provisioner.protocols.http_provisioner.wire import ProvisionRequest, RequestType
from provisioner.web.bodies import json_body
from provisioner.web.deps import RETRY_AFTER, ServicesDep, WorkerDep, shared_key

PROVISION_PATH = "/edc/provision"


def _problem(status: int, detail: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


# What each refusal of the core is to EDC.
STATUS = {
    Refusal.NOT_OFFERED: 422,
    Refusal.NOT_VERIFIED: 403,
    Refusal.UNVERIFIABLE: 503,
    Refusal.TENANT_TAKEN: 403,
    Refusal.STORE_DOWN: 503,
    Refusal.UNKNOWN: 404,
    Refusal.NOT_ENDING: 409,
}


def _refused(refused: Refused, req: ProvisionRequest) -> JSONResponse:
    detail = refused.reason
    if refused.kind is Refusal.NOT_OFFERED:
        detail = f"asset {req.asset_id!r} is not offered by this provisioner"
    return _problem(STATUS[refused.kind], detail, RETRY_AFTER if refused.retry else None)


def request_of(req: ProvisionRequest) -> TransferRequest:
    return TransferRequest(
        protocol=Protocol.HTTP_PROVISIONER,
        transfer_process_id=req.transfer_process_id,
        resource_definition_id=req.resource_definition_id,
        asset_id=req.asset_id,
        callback_address=req.callback_base,
        policy=req.policy,
    )


def router() -> APIRouter:
    api = APIRouter(tags=["http_provisioner"])

    async def provision(request: Request, svc: ServicesDep, worker: WorkerDep) -> Response:
        response = await _handle(request, svc, worker)
        kind = getattr(request.state, "request_kind", "unknown")  # what _handle took the request for
        svc.metrics.requests.labels(type=kind[:16], code=str(response.status_code)).inc()
        return response

    summary = "EDC HttpProvisionerRequest (provision and deprovision, by `type`)"
    codes: dict[int | str, dict[str, Any]] = {c: {} for c in (200, 201, 400, 401, 403, 404, 422, 503)}
    caller = [Depends(shared_key(lambda s: s.edc_inbound_key, "EDC"))]
    body = json_body(ProvisionRequest)
    api.add_api_route(
        PROVISION_PATH,
        provision,
        methods=["POST"],
        summary=summary,
        responses=codes,
        dependencies=caller,
        openapi_extra=body,
    )
    # For connectors that cannot add a header to the provisioner call (EDC's HTTP provisioner): the key as the
    # last path segment. The access log is off (cli.serve), so the key is never written anywhere.
    api.add_api_route(
        PROVISION_PATH + "/{path_key}",
        provision,
        methods=["POST"],
        summary=summary + "; key in the path",
        responses=codes,
        dependencies=caller,
        openapi_extra=body,
    )
    return api


async def _handle(request: Request, svc: Services, worker: Scheduler) -> Response:
    raw = await request.body()
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        return _problem(400, f"malformed JSON: {exc}")
    if not isinstance(data, dict):
        return _problem(400, "the body must be a JSON object (EDC HttpProvisionerRequest)")
    try:
        req = ProvisionRequest.model_validate(data)
    except ValidationError as exc:
        return _problem(400, exc.errors(include_url=False, include_context=False, include_input=False))
    request.state.request_kind = str(req.kind)
    connector = svc.settings.callback_base()
    if connector is None:
        return _problem(403, "no connector configured (WML_PROVISIONER_EDC_MANAGEMENT_URL or _EDC_CALLBACK_URL)")
    if not same_url(req.callback_base, connector):
        # Callbacks carry tokens: they go to the configured connector only, so a request naming another is not EDC's.
        return _problem(403, "callbackAddress is not this provisioner's connector")
    asked = request_of(req)
    try:
        typeless_deprovision = req.type is None and await grants.ending(svc, req.transfer_process_id)
        if req.kind == RequestType.DEPROVISION or typeless_deprovision:
            request.state.request_kind = str(RequestType.DEPROVISION)
            verify = not typeless_deprovision
            gone = await grants.deprovision(svc, worker, asked, verify)
            # EDC reads exactly 200 as "deprovisioned"; the teardown goes on in the background.
            return JSONResponse({"grant": gone.grant_id, "state": gone.state}, status_code=200)
        accepted = await grants.provision(svc, worker, asked)
    except Refused as refused:
        return _refused(refused, req)
    body = {"grant": accepted.grant_id, "state": accepted.state, "tenant": accepted.tenant_id}
    return JSONResponse(body, status_code=201 if accepted.created else 200)
