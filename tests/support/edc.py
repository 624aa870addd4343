"""EDC HTTP provisioner requests as a connector sends them, and what the provisioner tests do with them."""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

import httpx

from provisioner.app import PROVISION_PATH
from provisioner.infra.kube import KubeError
from provisioner.infra.s3users import S3AdminError
from provisioner.infra.services import Services
from templates.names import tenant_id_for
from tests.provisioner.helpers import INBOUND_KEY


def cleanup(svc: Services) -> None:
    """Remove whatever tenants of this database left in Kubernetes and MinIO (no waiting)."""
    from sqlalchemy import select

    from provisioner.infra.models import Tenant

    with svc.sessions() as session:
        tenants = list(session.scalars(select(Tenant)))
    for tenant in tenants:
        with contextlib.suppress(KubeError, S3AdminError):  # a stack hiccup fails the test, not this
            svc.kube.delete("v1", "Namespace", tenant.namespace)
            svc.storage.remove_user(f"wml-{tenant.id}")
            svc.storage.remove_user(f"wml-{tenant.id}-exec")
            svc.storage.delete_prefix(svc.settings.s3_prefix_for(tenant.id))


def edc_request(
    asset: str = "dummy",
    consumer: str | None = None,
    transfer: str | None = None,
    definition: str | None = None,
    kind: str | None = "provision",
    callback: str = "http://127.0.0.1:9/management/callback",
    policy: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A request body as EDC v0.15 sends it (captured shape)."""
    body: dict[str, Any] = {
        "assetId": asset,
        "transferProcessId": transfer or str(uuid.uuid4()),
        "policy": policy
        if policy is not None
        else {
            "permissions": [],
            "prohibitions": [],
            "obligations": [],
            "extensibleProperties": {},
            "inheritsFrom": None,
            "assigner": None,
            "assignee": consumer,
            "target": asset,
            "@type": {"@policytype": "set"},
        },
        "callbackAddress": callback,
        "resourceDefinitionId": definition or str(uuid.uuid4()),
    }
    if kind is not None:
        body["type"] = kind
    return body


def post(url: str, body: Any, raw: bytes | None = None, key: str | None = INBOUND_KEY) -> httpx.Response:
    content = raw if raw is not None else httpx.Request("POST", "/", json=body).content
    headers = {"Content-Type": "application/json", **({"X-Api-Key": key} if key else {})}
    return httpx.post(f"{url}{PROVISION_PATH}", content=content, headers=headers, timeout=30)


def new_consumer() -> str:
    return f"consumer-{uuid.uuid4().hex[:10]}"


def tenant_of(consumer: str) -> str:
    return tenant_id_for(consumer)
