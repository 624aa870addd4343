"""Talking to the EDC connector: the HTTP provisioner's callbacks and the management API (consumer lookup)."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from provisioner.infra.notify import CallbackResult, GrantRef, Outcome
from provisioner.infra.settings import ProvisionerSettings
from provisioner.protocols.http_provisioner.wire import ContentDataAddress, DeprovisionCallback, ProvisionCallback

log = logging.getLogger(__name__)

# Transfer states in which EDC deprovisions (it never provisions again from them).
ENDING_STATES = frozenset({"COMPLETED", "TERMINATED", "DEPROVISIONING", "DEPROVISIONING_REQUESTED", "DEPROVISIONED"})


# Provider-side transfer states in which EDC runs provisioners (a request in any other state is not EDC's).
PROVISIONING_STATES = frozenset({"INITIAL", "PROVISIONING", "PROVISIONING_REQUESTED", "PROVISIONED"})


class EdcLookupError(Exception):
    """The management API could not be asked (unreachable, 5xx, auth): retry later."""


class EdcRejected(EdcLookupError):
    """The management API answered, and its records contradict the request: never retry."""


@dataclass(frozen=True)
class TransferFacts:
    """What the connector's own records say about a transfer."""

    consumer_id: str
    contract_id: str
    asset_id: str
    state: str


def same_url(a: str, b: str) -> bool:
    """Whether two URLs name the same resource (scheme, host, port, path; trailing slashes aside). A string that
    is no URL at all (control characters, a bad host) names nothing: False, never an exception (found by fuzzing:
    a callbackAddress like that was a 500)."""
    try:
        x, y = httpx.URL(a.rstrip("/")), httpx.URL(b.rstrip("/"))
    except (httpx.InvalidURL, ValueError, TypeError, UnicodeError):
        return False
    return (x.scheme, x.host, x.port, x.path.rstrip("/")) == (y.scheme, y.host, y.port, y.path.rstrip("/"))


def _local(data: Any, name: str) -> Any:
    """A JSON-LD property by local name (``contractId``, ``edc:contractId``, ``…/ns/contractId``)."""
    if not isinstance(data, dict):
        return None
    for key, value in data.items():
        if re.split(r"[:/#]", key)[-1] == name:
            if isinstance(value, list) and value:
                value = value[0]
            if isinstance(value, dict):
                value = value.get("@value", value.get("@id"))
            return value if isinstance(value, str) else None
    return None


class EdcClient:
    def __init__(self, settings: ProvisionerSettings, transport: httpx.BaseTransport | None = None) -> None:
        self.settings = settings
        headers = {}
        if settings.edc_api_key is not None:
            headers["x-api-key"] = settings.edc_api_key.get_secret_value()
        self.http = httpx.Client(timeout=settings.http_timeout_seconds, headers=headers, transport=transport)

    def close(self) -> None:
        self.http.close()

    def _post(self, url: str, body: dict[str, Any]) -> CallbackResult:
        return post_result(self.http, url, body)

    def _callback(self, transfer_process_id: str, kind: str, body: dict[str, Any]) -> CallbackResult:
        # Only the configured connector ever receives a callback: the request's callbackAddress is never used.
        base = self.settings.callback_base()
        if base is None:
            return CallbackResult(Outcome.FATAL, "no connector callback configured")
        return self._post(f"{base}/{quote(transfer_process_id, safe='')}/{kind}", body)

    def provisioned(self, transfer_process_id: str, body: ProvisionCallback) -> CallbackResult:
        return self._callback(transfer_process_id, "provision", body.wire())

    def deprovisioned(self, transfer_process_id: str, body: DeprovisionCallback) -> CallbackResult:
        return self._callback(transfer_process_id, "deprovision", body.wire())

    def _get(self, path: str) -> dict[str, Any]:
        base = self.settings.edc_management_url
        if not base:
            raise EdcLookupError("no management API configured (WML_PROVISIONER_EDC_MANAGEMENT_URL)")
        try:
            response = self.http.get(f"{base.rstrip('/')}{path}")
        except httpx.HTTPError as exc:
            raise EdcLookupError(f"GET {path}: {exc}") from None
        if response.status_code in {400, 404}:
            raise EdcRejected(f"the connector does not know {path.rsplit('/', 1)[-1]!r}")
        if not response.is_success:
            raise EdcLookupError(f"GET {path}: {response.status_code} {response.text[:200]}")
        try:
            data = response.json()
        except ValueError:
            raise EdcLookupError(f"GET {path}: not JSON") from None
        return data if isinstance(data, dict) else {}

    def transfer_state(self, transfer_process_id: str) -> str:
        """The transfer process's state name (``STARTED``, ``DEPROVISIONING``…) on the provider."""
        state = _local(self._get(f"/v3/transferprocesses/{quote(transfer_process_id, safe='')}"), "state")
        if not state:
            raise EdcLookupError(f"transfer process {transfer_process_id} has no state")
        return str(state)

    def verify_transfer(
        self, transfer_process_id: str, asset_id: str, states: frozenset[str] = PROVISIONING_STATES
    ) -> TransferFacts:
        """The connector's record of a transfer it is provisioning: its consumer, contract and asset.

        Raises EdcRejected when the records contradict the request (unknown transfer, other asset, a state in
        which EDC does not provision), EdcLookupError when the connector cannot be asked.
        """
        process = self._get(f"/v3/transferprocesses/{quote(transfer_process_id, safe='')}")
        state = _local(process, "state") or ""
        if state not in states:
            raise EdcRejected(f"transfer {transfer_process_id} is {state or 'in no state'}, not being set up")
        recorded_asset = _local(process, "assetId")
        if recorded_asset is not None and recorded_asset != asset_id:
            raise EdcRejected(f"transfer {transfer_process_id} is for another asset")
        contract_id = _local(process, "contractId")
        if not contract_id:
            raise EdcRejected(f"transfer process {transfer_process_id} names no contractId")
        agreement = self._get(f"/v3/contractagreements/{quote(contract_id, safe='')}")
        consumer = _local(agreement, "consumerId")
        if not consumer:
            raise EdcRejected(f"contract agreement {contract_id} names no consumerId")
        agreed_asset = _local(agreement, "assetId")
        if agreed_asset is not None and agreed_asset != asset_id:
            raise EdcRejected(f"contract agreement {contract_id} is for another asset")
        return TransferFacts(consumer_id=consumer, contract_id=contract_id, asset_id=asset_id, state=state)


def post_result(
    http: httpx.Client, url: str, body: dict[str, object] | None, headers: dict[str, str] | None = None
) -> CallbackResult:
    """POST to a connector and classify its answer (shared by every protocol's callbacks)."""
    try:
        response = http.post(url, json=body, headers=headers) if body is not None else http.post(url, headers=headers)
    except httpx.HTTPError as exc:
        return CallbackResult(Outcome.RETRY, f"{type(exc).__name__}: {exc}")
    detail = f"{response.status_code} {response.text[:300]}"
    if response.is_success:
        return CallbackResult(Outcome.OK, detail)
    if response.status_code in {400, 404, 405, 410, 422}:
        return CallbackResult(Outcome.FATAL, detail)
    return CallbackResult(Outcome.RETRY, detail)


def data_address(endpoint: str, token: str) -> ContentDataAddress:
    """Shape (a) of the protocol notes: the provider's data plane proxies the consumer's calls."""
    return ContentDataAddress.http_data(
        baseUrl=endpoint,
        authKey="Authorization",
        authCode=f"Bearer {token}",
        proxyPath="true",
        proxyMethod="true",
        proxyQueryParams="true",
        proxyBody="true",
    )


class HttpProvisionerNotifier:
    """The HTTP provisioner's callbacks: ``provision`` (with the token) and ``deprovision``; it has no failure
    callback, so a failed grant is left to EDC's own provisioning timeout."""

    def __init__(self, edc: EdcClient) -> None:
        self.edc = edc

    def ready(self, grant: GrantRef, endpoint: str, token: str) -> CallbackResult:
        body = ProvisionCallback(
            resource_definition_id=grant.resource_definition_id,
            asset_id=grant.asset_id,
            resource_name=grant.resource_name,
            content_data_address=data_address(endpoint, token),
            api_key_jwt=token,
            has_token=True,
        )
        return self.edc.provisioned(grant.transfer_process_id, body)

    def ended(self, grant: GrantRef) -> CallbackResult:
        body = DeprovisionCallback(provisioned_resource_id=grant.resource_name)
        return self.edc.deprovisioned(grant.transfer_process_id, body)

    def failed(self, grant: GrantRef, reason: str) -> CallbackResult:
        return CallbackResult(Outcome.OK, "the HTTP provisioner has no failure callback")
