"""Reading values back from a tenant's Kubernetes Secrets: the one place that decodes a Secret's data.

A grant's token and the tenant's S3 secret keys exist in full only in Secrets of the tenant namespace; the
database keeps the tokens' sha256. Steps, delivery and the signaling flows read them back through here.
"""

from __future__ import annotations

import base64
from typing import Any

from provisioner.infra.kube import Kube
from templates.names import grant_token_secret_name


def secret_value(secret: dict[str, Any] | None, key: str) -> str | None:
    """One key of a Secret as read from the API server (``data``, base64) or as we built it (``stringData``)."""
    if not secret:
        return None
    if key in (secret.get("stringData") or {}):
        return str(secret["stringData"][key])
    raw = (secret.get("data") or {}).get(key)
    return base64.b64decode(raw).decode() if raw else None


def grant_token(kube: Kube, namespace: str, grant_id: int) -> str | None:
    """A grant's token, read back from its Secret (None when there is none)."""
    return secret_value(kube.get("v1", "Secret", grant_token_secret_name(grant_id), namespace), "token")
