"""The tenant's WorkflowTemplates: each asset it holds, compiled with Hera for its namespace and S3 prefix."""

from __future__ import annotations

from typing import Any

from provisioner.infra.settings import ProvisionerSettings
from provisioner.manifests.config import storage_target
from provisioner.manifests.spec import TenantSpec
from templates import CompileOptions, compile_asset
from templates.names import WORKER


def workflow_templates(settings: ProvisionerSettings, spec: TenantSpec) -> list[dict[str, Any]]:
    target = storage_target(settings, spec)
    options = CompileOptions(namespace=spec.namespace, tenant=spec.tenant, workflow_service_account=WORKER)
    return [compile_asset(asset, target, options).to_dict() for asset in spec.assets]
