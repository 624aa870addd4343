"""Talking to a control plane over Eclipse Data Plane Signaling (DPS; EDC >= 0.18): registration and callbacks.

Callbacks go to ``{dps_control_url}/transfers/{id}/dataflow/started|completed|errored`` carrying a
``DataFlowStatusMessage``; registration is ``PUT`` of the ``DataPlaneRegistrationMessage``. With an OAuth2 key
configured, each call carries a JWT signed by us (``sub`` = our data plane id) and the registration publishes the
public key as ``jwks``. No callback ever goes to an address a request named: only to the configured control plane.
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

from provisioner.infra.connector import connector_http
from provisioner.infra.notify import CallbackResult, GrantRef, Outcome
from provisioner.infra.settings import ProvisionerSettings
from provisioner.protocols.common import RegistrationError, post_result
from provisioner.protocols.dps import wire as dps


class DpsClient:
    """The DPS :class:`~provisioner.infra.notify.Notifier`, and our registration with its control plane."""

    def __init__(self, settings: ProvisionerSettings, transport: httpx.BaseTransport | None = None) -> None:
        self.settings = settings
        self.http = connector_http(settings, None, transport)
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
