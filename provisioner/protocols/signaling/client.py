"""Talking to a control plane over EDC's data plane signaling (EDC 0.5-0.17, Tractus-X): registration and callbacks.

Callbacks go to ``{control}/transferprocess/{id}/provisioned|complete|fail`` of the configured control API, with
``x-api-key`` when the control API is token-protected; registration is a JSON-LD upsert at
``{control}/v1/dataplanes``. No callback ever goes to an address a request named: only to the configured control
plane.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from provisioner.infra.connector import connector_http
from provisioner.infra.notify import CallbackResult, GrantRef, Outcome
from provisioner.infra.settings import ProvisionerSettings
from provisioner.protocols.common import RegistrationError, post_result
from provisioner.protocols.signaling import wire as signaling


def signaling_url(settings: ProvisionerSettings) -> str:
    """Our signaling data plane URL as registered: the inbound key is its path segment, because EDC's signaling
    client sends no credentials."""
    base = (settings.signaling_self_url or "").rstrip("/")
    key = settings.signaling_inbound_key.get_secret_value() if settings.signaling_inbound_key else ""
    return f"{base}/signaling/{quote(key, safe='')}/dataflows" if key else f"{base}/signaling/dataflows"


class SignalingClient:
    """The signaling :class:`~provisioner.infra.notify.Notifier`, and our registration with its control plane."""

    def __init__(self, settings: ProvisionerSettings, transport: httpx.BaseTransport | None = None) -> None:
        self.settings = settings
        self.http = connector_http(settings, settings.signaling_control_key, transport)

    def close(self) -> None:
        self.http.close()

    def _control(self) -> str:
        if not self.settings.signaling_control_url:
            raise RegistrationError("no control API configured (WML_PROVISIONER_SIGNALING_CONTROL_URL)")
        return self.settings.signaling_control_url.rstrip("/")

    def registered(self) -> bool:
        """Whether the control plane knows us under our id and URL. EDC 0.15 resets a data plane it is told about
        again to REGISTERED until its next health check, and selects only AVAILABLE ones: re-registering a known
        data plane would open a window of "No dataplane found", so we register only when it forgot us."""
        try:
            response = self.http.get(f"{self._control()}/v1/dataplanes")
        except httpx.HTTPError as exc:
            raise RegistrationError(f"{type(exc).__name__}: {exc}") from None
        if not response.is_success:
            raise RegistrationError(f"listing data planes: {response.status_code} {response.text[:300]}")
        listed = response.json()
        for entry in listed if isinstance(listed, list) else [listed]:
            view = signaling.local_view(entry) if isinstance(entry, dict) else {}
            if view.get("@id") == self.settings.signaling_dataplane_id:
                return bool(view.get("url") == signaling_url(self.settings))
        return False

    def register(self) -> None:
        """Register unless the control plane already knows us (see :meth:`registered`)."""
        if self.registered():
            return
        body = signaling.registration(
            self.settings.signaling_dataplane_id, signaling_url(self.settings), self.settings.signaling_source_types
        )
        try:
            response = self.http.post(f"{self._control()}/v1/dataplanes", json=body)
        except httpx.HTTPError as exc:
            raise RegistrationError(f"{type(exc).__name__}: {exc}") from None
        if not response.is_success:
            raise RegistrationError(f"{response.status_code} {response.text[:300]}")

    def _callback(self, grant: GrantRef, kind: str, body: dict[str, Any] | None) -> CallbackResult:
        try:
            base = self._control()
        except RegistrationError as exc:
            return CallbackResult(Outcome.FATAL, str(exc))
        return post_result(
            self.http, f"{base}/transferprocess/{quote(grant.transfer_process_id, safe='')}/{kind}", body
        )

    def ready(self, grant: GrantRef, endpoint: str, token: str) -> CallbackResult:
        # The token is not in this callback: EDC calls start again and our answer to it carries the token.
        return self._callback(grant, "provisioned", signaling.provisioned_address(endpoint))

    def ended(self, grant: GrantRef) -> CallbackResult:
        return self._callback(grant, "complete", None)

    def failed(self, grant: GrantRef, reason: str) -> CallbackResult:
        return self._callback(grant, "fail", signaling.failure(reason))
