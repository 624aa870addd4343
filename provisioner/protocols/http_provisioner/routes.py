"""EDC's control-plane HTTP provisioner (EDC <= 0.15): ``POST /edc/provision``, provision and deprovision.

The connector authenticates with the shared key (header, or the last path segment for EDC's provisioner,
which cannot send headers). The consumer is verified with the connector's management API before anything is
stored; callbacks go to the configured connector only. Status codes are what EDC reads: 201/200 accepted,
4xx final, 503 + Retry-After retried.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from provisioner.core import identity, store
from provisioner.core.scheduler import Worker
from provisioner.infra.connector import ENDING_STATES, EdcLookupError, EdcRejected, same_url
from provisioner.infra.services import Services
from provisioner.infra.states import Protocol
from provisioner.protocols.http_provisioner.wire import ProvisionRequest, RequestType
from provisioner.web.bodies import json_body
from provisioner.web.deps import RETRY_AFTER, ServicesDep, WorkerDep, shared_key

log = logging.getLogger(__name__)
PROVISION_PATH = "/edc/provision"


def _problem(status: int, detail: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def claim_of(req: ProvisionRequest) -> store.Claim:
    return store.Claim(
        protocol=Protocol.HTTP_PROVISIONER,
        transfer_process_id=req.transfer_process_id,
        resource_definition_id=req.resource_definition_id,
        asset_id=req.asset_id,
        callback_address=req.callback_base,
        policy=req.policy,
    )


def router() -> APIRouter:
    api = APIRouter(tags=["edc"])

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


async def _handle(request: Request, svc: Services, worker: Worker) -> Response:
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
    claim = claim_of(req)
    try:
        try:
            typeless_deprovision = await asyncio.to_thread(_typeless_deprovision, svc, req)
        except EdcLookupError as exc:
            # 5xx makes EDC send the same request again, whichever it was; 200 would end a deprovision.
            log.warning("typeless request for known transfer %s, EDC not asked: %s", req.transfer_process_id, exc)
            return _problem(503, "cannot tell provision from deprovision yet (EDC's management API)", RETRY_AFTER)
        if req.kind == RequestType.DEPROVISION or typeless_deprovision:
            request.state.request_kind = str(RequestType.DEPROVISION)
            return await _deprovision(svc, worker, req, claim, verify=not typeless_deprovision)
        asset = await asyncio.to_thread(svc.catalogue.resolve, req.asset_id, svc.sessions)
        if asset is None:
            return _problem(422, f"asset {req.asset_id!r} is not offered by this provisioner")
        existing = await asyncio.to_thread(store.existing_grant, svc.sessions, claim)
        if existing is not None:
            return JSONResponse(
                {"grant": existing.grant_id, "state": existing.state, "tenant": existing.tenant_id}, status_code=200
            )
        try:
            who = await asyncio.to_thread(identity.resolve, svc, req.transfer_process_id, req.asset_id, req.policy)
        except EdcRejected as exc:
            return _problem(403, f"not verified with the connector: {exc}")
        except EdcLookupError as exc:
            log.warning("transfer %s not verified yet: %s", req.transfer_process_id, exc)
            return _problem(503, "the connector's management API cannot be asked yet", RETRY_AFTER)
        try:
            accepted = await asyncio.to_thread(
                store.accept_provision, svc.sessions, svc.settings, claim, asset.name, svc.clock(), who
            )
        except store.TenantCollision as exc:
            log.error("refused transfer %s: %s", req.transfer_process_id, exc)
            return _problem(403, "this consumer's tenant id is taken by another consumer; the operator is alerted")
    except (DBAPIError, SQLAlchemyError) as exc:
        log.warning("database unavailable: %s", exc)
        return _problem(503, "state store unavailable, retry later", RETRY_AFTER)
    if accepted.tenant_id:
        worker.kick_tenant(accepted.tenant_id, due=accepted.created)
    else:
        worker.kick_grant(accepted.grant_id)
    body = {"grant": accepted.grant_id, "state": accepted.state, "tenant": accepted.tenant_id}
    return JSONResponse(body, status_code=201 if accepted.created else 200)


async def _deprovision(
    svc: Services, worker: Worker, req: ProvisionRequest, claim: store.Claim, verify: bool
) -> Response:
    if not await asyncio.to_thread(store.known_transfer, svc.sessions, req.transfer_process_id):
        return _problem(404, f"unknown transfer process {req.transfer_process_id!r}")
    if svc.settings.verify_with_management and verify:
        try:
            state = await asyncio.to_thread(svc.edc.transfer_state, req.transfer_process_id)
        except EdcRejected as exc:
            return _problem(403, f"not verified with the connector: {exc}")
        except EdcLookupError:
            return _problem(503, "the connector's management API cannot be asked yet", RETRY_AFTER)
        if state not in ENDING_STATES:
            return _problem(409, f"the connector's transfer is {state}, not ending: nothing deprovisioned")
    try:
        accepted = await asyncio.to_thread(store.accept_deprovision, svc.sessions, claim)
    except store.UnknownTransfer:
        return _problem(404, f"unknown transfer process {req.transfer_process_id!r}")
    if accepted.tenant_id:
        worker.kick_tenant(accepted.tenant_id, due=True)
    # EDC reads exactly 200 as "deprovisioned"; the teardown goes on in the background.
    return JSONResponse({"grant": accepted.grant_id, "state": accepted.state}, status_code=200)


def _typeless_deprovision(svc: Services, req: ProvisionRequest) -> bool:
    """EDC up to 0.10 sends deprovision without ``type``, with the provision request's very body. A typeless
    request for a transfer we know is a deprovision when EDC's management API shows the transfer ending
    (EDC provisions only while it is ``PROVISIONING*``). Raises EdcLookupError when EDC cannot be asked;
    without a management API configured, such requests stay provisions (the operator guide says so)."""
    if req.type is not None or not svc.settings.edc_management_url:
        return False
    if not store.known_transfer(svc.sessions, req.transfer_process_id):
        return False
    state = svc.edc.transfer_state(req.transfer_process_id)
    log.info("typeless request for transfer %s in state %s", req.transfer_process_id, state)
    return state in ENDING_STATES
