"""Whether a tenant API really answers: one request with the token about to be handed out.

A Deployment that Kubernetes calls available is not yet an endpoint a consumer can use (the ingress may not
route it yet, the token set may not have reached the pods). The provisioner hands out nothing until the URL
it checks answers the token with 200; ``transport`` is the test seam, as in httpx.
"""

from __future__ import annotations

from enum import StrEnum

import httpx

from provisioner.infra.settings import ProvisionerSettings

# Token-gated and served from memory: proves routing, the pod and the token set without touching S3 or Argo.
PROBE_PATH = "openapi.json"


class Answer(StrEnum):
    OK = "ok"
    TOKEN_UNKNOWN = "token-unknown"  # the API answers, but not yet to this token
    UNREACHABLE = "unreachable"  # no connection, a timeout, or not our API (the ingress without a route yet)


class ApiProbe:
    def __init__(self, settings: ProvisionerSettings, transport: httpx.BaseTransport | None = None) -> None:
        self.settings = settings
        # Short: a probe that hangs would hold a tenant worker; the step re-queues instead.
        self.http = httpx.Client(timeout=5.0, transport=transport, verify=settings.api_probe_verify_tls)

    def check(self, tenant: str, token: str) -> tuple[Answer, str]:
        """The answer, and what was seen (for the tenant's error field; never the token)."""
        url = self.settings.api_probe_url_for(tenant).rstrip("/") + "/" + PROBE_PATH
        try:
            response = self.http.get(url, headers={"Authorization": f"Bearer {token}"})
        except httpx.HTTPError as exc:
            return Answer.UNREACHABLE, f"{url}: {type(exc).__name__}"
        if response.status_code == 200:
            return Answer.OK, ""
        if response.status_code == 401 and response.headers.get("content-type", "").startswith(
            "application/problem+json"
        ):
            return Answer.TOKEN_UNKNOWN, f"{url}: 401"
        return Answer.UNREACHABLE, f"{url}: HTTP {response.status_code}"

    def close(self) -> None:
        self.http.close()
