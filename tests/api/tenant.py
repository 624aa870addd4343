"""A tenant made by the provisioner's own builders — its namespace labels, Roles, quota, NetworkPolicies, scoped
MinIO users and WorkflowTemplates — and a consumer API serving it in-process (tests, benchmarks). So the API is
proven under exactly the permissions a provisioned tenant has; only its Deployment is replaced by a local server."""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s

from api.app import create_app
from api.client import Client
from api.settings import ApiSettings
from devstack.servers import serve
from devstack.stack import kube
from devstack.stack.launcher import StackInfo
from provisioner import manifests
from provisioner.infra.s3users import S3Admin, S3AdminError
from provisioner.infra.settings import ProvisionerSettings
from templates import WorkflowAsset, load_directory
from templates.names import API
from tests.support.examples import EXAMPLES

QUOTA_CONCURRENT_JOBS = 3


@dataclass
class ApiTenant:
    name: str
    namespace: str
    url: str
    token: str
    settings: ApiSettings
    app: Any = None  # the FastAPI app serving it (its state: the tenant's services)

    def client(self, token: str | None = None) -> Client:
        return Client(self.url, token or self.token)


def provisioner_settings(stack: StackInfo) -> ProvisionerSettings:
    return ProvisionerSettings(
        database_url="sqlite://",
        s3_endpoint=stack.s3_host,
        s3_bucket=stack.bucket,
        s3_admin_access_key=stack.s3_access_key,
        s3_admin_secret_key=stack.s3_secret_key,
        argo_server_url=stack.argo_server_url,
        argo_verify_tls=False,
        quota_concurrent_jobs=QUOTA_CONCURRENT_JOBS,
        # One API process serves these tests: a one-replica tenant's shape (test_quota also plays two).
        api_replicas=1,
    )


def tenant_spec(
    settings: ProvisionerSettings, tenant: str, token: str, extra: tuple[WorkflowAsset, ...] = ()
) -> manifests.TenantSpec:
    """The spec of a tenant with the example assets (and ``extra``), fresh MinIO keys and one token."""
    return manifests.TenantSpec(
        tenant=tenant,
        namespace=settings.namespace_for(tenant),
        token_digests=(hashlib.sha256(token.encode()).hexdigest(),),
        s3_access_key=f"wml-{tenant}",
        s3_secret_key=secrets.token_urlsafe(30),
        exec_access_key=f"wml-{tenant}-exec",
        exec_secret_key=secrets.token_urlsafe(30),
        contract_id=f"contract-{tenant}",
        assets=[*load_directory(EXAMPLES).values(), *extra],
    )


def prepare_namespace(
    stack: StackInfo, api: k8s.ApiClient, tenant: str, token: str, extra: tuple[WorkflowAsset, ...] = ()
) -> tuple[manifests.TenantSpec, str]:
    """Everything the provisioner makes for ``tenant`` but the API Deployment; (its spec, the API account's token)."""
    settings = provisioner_settings(stack)
    spec = tenant_spec(settings, tenant, token, extra)
    storage = S3Admin(settings)
    prefix = settings.s3_prefix_for(tenant)
    storage.ensure_user(spec.s3_access_key, spec.s3_secret_key, prefix)
    storage.ensure_user(spec.exec_access_key, spec.exec_secret_key, prefix, executor=True)
    objects = [
        manifests.namespace(settings, spec),
        *manifests.rbac(spec),
        *manifests.quota(settings, spec),
        *manifests.network_policies(settings, spec),
        *manifests.config_objects(settings, spec),
        *manifests.workflow_templates(settings, spec),
    ]
    kube.apply(kube.dynamic(api), objects)
    return spec, kube.service_account_token(api, spec.namespace, API)


def remove_tenant(stack: StackInfo, api: k8s.ApiClient, spec: manifests.TenantSpec) -> None:
    with contextlib.suppress(k8s.ApiException):
        k8s.CoreV1Api(api).delete_namespace(spec.namespace, propagation_policy="Background")
    storage = S3Admin(provisioner_settings(stack))
    with contextlib.suppress(S3AdminError):
        storage.remove_user(spec.s3_access_key)
        storage.remove_user(spec.exec_access_key)


@contextmanager
def api_tenant(
    stack: StackInfo, label: str = "api", extra_assets: tuple[WorkflowAsset, ...] = (), **overrides: object
) -> Iterator[ApiTenant]:
    """A fresh provisioner-shaped tenant with the example assets registered, and its API served on loopback."""
    tenant = f"t-{label}-{uuid.uuid4().hex[:6]}"
    api = kube.api_client(stack.kubeconfig)
    token = secrets.token_urlsafe(32)
    spec, sa_token = prepare_namespace(stack, api, tenant, token, extra_assets)
    plain, secret = manifests.api_env(provisioner_settings(stack), spec)
    settings = ApiSettings.model_validate(
        {
            **{k.removeprefix("WML_API_").lower(): v for k, v in {**plain, **secret}.items()},
            "s3_endpoint_url": stack.s3_endpoint,
            "argo_token": sa_token,
            "kube_api_url": api.configuration.host,
            "kube_ca_file": api.configuration.ssl_ca_cert,
        }
    ).model_copy(update=overrides)
    try:
        app = create_app(settings)
        with serve(app) as url:
            yield ApiTenant(tenant, spec.namespace, url, token, settings, app)
    finally:
        remove_tenant(stack, api, spec)
