"""The connector's management API: what its own records say about a transfer (state, contract, consumer, asset).

Every protocol's identity check stands on it (:mod:`provisioner.core.identity`); the protocols' callbacks are
in their own clients (``provisioner.protocols.*.client``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import SecretStr

from provisioner.infra.settings import ProvisionerSettings

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


def connector_http(
    settings: ProvisionerSettings, api_key: SecretStr | None, transport: httpx.BaseTransport | None = None
) -> httpx.Client:
    """An HTTP client for calls to a connector (management API, callbacks, registration): the operator's timeout,
    and its key as ``x-api-key`` where one is configured."""
    headers = {"x-api-key": api_key.get_secret_value()} if api_key is not None else {}
    return httpx.Client(timeout=settings.http_timeout_seconds, headers=headers, transport=transport)


class ManagementClient:
    """Transfer lookups on the connector's management API (``edc_management_url``, with ``edc_api_key``)."""

    def __init__(self, settings: ProvisionerSettings, transport: httpx.BaseTransport | None = None) -> None:
        self.settings = settings
        self.http = connector_http(settings, settings.edc_api_key, transport)

    def close(self) -> None:
        self.http.close()

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
