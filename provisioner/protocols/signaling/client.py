"""Talking to a control plane over data plane signaling: registration and callbacks, for both dialects.

Dialect A (EDC 0.5-0.17, Tractus-X): callbacks go to ``{control}/transferprocess/{id}/provisioned|complete|fail``
of the configured control API, with ``x-api-key`` when the control API is token-protected; registration is a
JSON-LD upsert at ``{control}/v1/dataplanes``. Dialect B (DPS): ``{signaling}/transfers/{id}/dataflow/started|
completed|errored`` carrying a ``DataFlowStatusMessage``; registration is ``PUT`` of the
``DataPlaneRegistrationMessage``. With an OAuth2 key configured, each DPS call carries a JWT signed by us
(``sub`` = our data plane id) and the registration publishes the public key as ``jwks``.

No callback ever goes to an address a request named: only to the configured control plane.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any
from urllib.parse import quote

import httpx
import jwt
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from provisioner.infra.connector import post_result
from provisioner.infra.notify import CallbackResult, GrantRef, Outcome
from provisioner.infra.settings import ProvisionerSettings
from provisioner.protocols.dps import wire as dps
from provisioner.protocols.signaling import wire as signaling


class RegistrationError(Exception):
    """The control plane did not take our registration (retried by the registrar)."""


def signaling_url(settings: ProvisionerSettings) -> str:
    """Our dialect-A data plane URL as registered: the inbound key is its path segment, because EDC's signaling
    client sends no credentials."""
    base = (settings.signaling_self_url or "").rstrip("/")
    key = settings.signaling_inbound_key.get_secret_value() if settings.signaling_inbound_key else ""
    return f"{base}/signaling/{quote(key, safe='')}/dataflows" if key else f"{base}/signaling/dataflows"


class SignalingClient:
    """Dialect A."""

    def __init__(self, settings: ProvisionerSettings, transport: httpx.BaseTransport | None = None) -> None:
        self.settings = settings
        headers = {}
        if settings.signaling_control_key is not None:
            headers["x-api-key"] = settings.signaling_control_key.get_secret_value()
        self.http = httpx.Client(timeout=settings.http_timeout_seconds, headers=headers, transport=transport)

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


class DpsClient:
    """Dialect B."""

    def __init__(self, settings: ProvisionerSettings, transport: httpx.BaseTransport | None = None) -> None:
        self.settings = settings
        self.http = httpx.Client(timeout=settings.http_timeout_seconds, transport=transport)
        self._key: Any = None
        if settings.dps_oauth2_private_key is not None:
            from cryptography.hazmat.primitives.serialization import load_pem_private_key

            self._key = load_pem_private_key(settings.dps_oauth2_private_key.get_secret_value().encode(), None)

    def close(self) -> None:
        self.http.close()

    @property
    def algorithm(self) -> str:
        from cryptography.hazmat.primitives.asymmetric import ec

        return "ES256" if isinstance(self._key, ec.EllipticCurvePrivateKey) else "RS256"

    def jwks(self) -> dict[str, Any] | None:
        """Our public key as a JWKS (what the control plane verifies our callbacks with)."""
        if self._key is None:
            return None
        public = self._key.public_key()
        algo = ECAlgorithm if self.algorithm == "ES256" else RSAAlgorithm
        jwk = json.loads(algo.to_jwk(public))
        jwk.update(kid=self.settings.signaling_dataplane_id, use="sig", alg=self.algorithm)
        return {"keys": [jwk]}

    def token(self, audience: str) -> str | None:
        if self._key is None:
            return None
        now = int(time.time())
        claims = {
            "iss": self.settings.signaling_dataplane_id,
            "sub": self.settings.signaling_dataplane_id,
            "aud": audience,
            "iat": now,
            "exp": now + 300,
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(
            claims, self._key, algorithm=self.algorithm, headers={"kid": self.settings.signaling_dataplane_id}
        )

    def _headers(self) -> dict[str, str]:
        token = self.token(self.settings.dps_control_plane_id)
        return {"Authorization": f"Bearer {token}"} if token else {}

    def register(self) -> None:
        if not self.settings.dps_registration_url:
            raise RegistrationError("no registration URL configured (WML_PROVISIONER_DPS_REGISTRATION_URL)")
        jwks = self.jwks()
        authorization = None
        if jwks is not None:
            authorization = {
                "type": "oauth2_client_credentials",
                "tokenEndpoint": "",
                "clientId": self.settings.signaling_dataplane_id,
                "clientSecret": "",
                "jwks": jwks,
            }
        endpoint = f"{(self.settings.signaling_self_url or '').rstrip('/')}/dps"
        body = dps.registration(
            self.settings.signaling_dataplane_id, endpoint, self.settings.dps_profiles, authorization
        )
        headers = self._headers()
        if self.settings.dps_registration_key is not None:
            headers["x-api-key"] = self.settings.dps_registration_key.get_secret_value()
        try:
            response = self.http.put(self.settings.dps_registration_url, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise RegistrationError(f"{type(exc).__name__}: {exc}") from None
        if not response.is_success:
            raise RegistrationError(f"{response.status_code} {response.text[:300]}")

    def _callback(self, grant: GrantRef, kind: str, body: dict[str, Any]) -> CallbackResult:
        base = self.settings.dps_control_url
        if not base:
            return CallbackResult(Outcome.FATAL, "no control plane configured (WML_PROVISIONER_DPS_CONTROL_URL)")
        url = f"{base.rstrip('/')}/transfers/{quote(grant.transfer_process_id, safe='')}/dataflow/{kind}"
        return post_result(self.http, url, body, self._headers())

    def ready(self, grant: GrantRef, endpoint: str, token: str) -> CallbackResult:
        address = dps.data_address(endpoint, token, dps.endpoint_type(grant.profile))
        body = dps.status(uuid.uuid4().hex, grant.transfer_process_id, dps.FlowState.STARTED, address)
        return self._callback(grant, "started", body)

    def ended(self, grant: GrantRef) -> CallbackResult:
        body = dps.status(uuid.uuid4().hex, grant.transfer_process_id, dps.FlowState.COMPLETED)
        return self._callback(grant, "completed", body)

    def failed(self, grant: GrantRef, reason: str) -> CallbackResult:
        body = dps.status(uuid.uuid4().hex, grant.transfer_process_id, dps.FlowState.TERMINATED, error=reason)
        return self._callback(grant, "errored", body)
