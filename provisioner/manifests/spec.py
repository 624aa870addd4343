"""What a tenant's objects are built from (:class:`TenantSpec`) and the metadata every one of them carries.

The builders in this package are pure functions of the settings and a spec; nothing here talks to a server.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from templates import WorkflowAsset
from templates.labels import LABEL_MANAGED_BY, LABEL_TENANT, MANAGER


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class TenantSpec:
    tenant: str
    namespace: str
    token_digests: tuple[str, ...]  # sha256 of each active grant's token
    s3_access_key: str  # the API's MinIO user: the whole tenant prefix
    s3_secret_key: str
    exec_access_key: str = ""  # the executor's MinIO user: job inputs (read), outputs and logs (write)
    exec_secret_key: str = ""
    contract_id: str = ""
    token_scopes: tuple[tuple[str, str], ...] = ()  # (token sha256, asset name) for each active grant
    assets: list[WorkflowAsset] = field(default_factory=list)


def _meta(spec: TenantSpec, name: str, **extra: Any) -> dict[str, Any]:
    labels = {LABEL_MANAGED_BY: MANAGER, LABEL_TENANT: spec.tenant, **extra.pop("labels", {})}
    return {"name": name, "namespace": spec.namespace, "labels": labels, **extra}


def _obj(api_version: str, kind: str, metadata: dict[str, Any], **body: Any) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata, **body}
