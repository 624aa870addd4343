"""What every protocol's client shares: POSTing to the configured connector and classifying its answer, and the
error a failed data plane registration raises (the registrar retries it)."""

from __future__ import annotations

import httpx

from provisioner.infra.notify import CallbackResult, Outcome


class RegistrationError(Exception):
    """The control plane did not take our registration (retried by the registrar)."""


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
