"""The HTTP provisioner's callbacks to the configured connector: ``provision`` (a DataAddress with the tenant
API's base URL and this grant's token) and ``deprovision``. The protocol has no failure callback, so a failed
grant is left to EDC's own provisioning timeout. Only the configured connector ever receives a callback: the
request's ``callbackAddress`` is never used."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from provisioner.infra.connector import connector_http
from provisioner.infra.notify import CallbackResult, GrantRef, Outcome
from provisioner.infra.settings import ProvisionerSettings
from provisioner.protocols.common import post_result
from provisioner.protocols.http_provisioner.wire import ContentDataAddress, DeprovisionCallback, ProvisionCallback


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


class HttpProvisionerClient:
    """The HTTP provisioner's :class:`~provisioner.infra.notify.Notifier`."""

    def __init__(self, settings: ProvisionerSettings, transport: httpx.BaseTransport | None = None) -> None:
        self.settings = settings
        self.http = connector_http(settings, settings.edc_api_key, transport)

    def close(self) -> None:
        self.http.close()

    def _callback(self, transfer_process_id: str, kind: str, body: dict[str, Any]) -> CallbackResult:
        base = self.settings.callback_base()
        if base is None:
            return CallbackResult(Outcome.FATAL, "no connector callback configured")
        return post_result(self.http, f"{base}/{quote(transfer_process_id, safe='')}/{kind}", body)

    def provisioned(self, transfer_process_id: str, body: ProvisionCallback) -> CallbackResult:
        return self._callback(transfer_process_id, "provision", body.wire())

    def deprovisioned(self, transfer_process_id: str, body: DeprovisionCallback) -> CallbackResult:
        return self._callback(transfer_process_id, "deprovision", body.wire())

    def ready(self, grant: GrantRef, endpoint: str, token: str) -> CallbackResult:
        body = ProvisionCallback(
            resource_definition_id=grant.resource_definition_id,
            asset_id=grant.asset_id,
            resource_name=grant.resource_name,
            content_data_address=data_address(endpoint, token),
            api_key_jwt=token,
            has_token=True,
        )
        return self.provisioned(grant.transfer_process_id, body)

    def ended(self, grant: GrantRef) -> CallbackResult:
        return self.deprovisioned(
            grant.transfer_process_id, DeprovisionCallback(provisioned_resource_id=grant.resource_name)
        )

    def failed(self, grant: GrantRef, reason: str) -> CallbackResult:
        return CallbackResult(Outcome.OK, "the HTTP provisioner has no failure callback")
