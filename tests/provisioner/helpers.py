"""Checks on the real stack shared by the provisioner tests."""

from __future__ import annotations

import base64
import functools
import io
import ssl
import uuid
from pathlib import Path
from typing import Any

import httpx
from minio import Minio
from minio.error import S3Error
from sqlalchemy import func, select

from devstack.stack.app_image import Target, ensure_app_image
from devstack.stack.launcher import StackInfo
from provisioner.infra.models import Grant, Tenant
from provisioner.infra.services import Services
from provisioner.infra.settings import ProvisionerSettings
from templates.labels import LABEL_MANAGED_BY, MANAGER
from templates.names import API_ENV_SECRET, S3_SECRET, grant_token_secret_name
from tests.provisioner.servers import API_KEY

ASSETS = Path(__file__).resolve().parents[2] / "templates" / "examples"
ADMIN_TOKEN = "test-admin-token"
INBOUND_KEY = "test-inbound-key"  # what the connector presents on /edc/provision


SIGNALING_KEY = "test-signaling-key"


@functools.cache
def api_image() -> str:
    """Our API image (argo/images/Dockerfile, target api), built once and imported into containerd: a tenant is
    handed out only when its API pods really answer."""
    return ensure_app_image(Target.API)


def stack_settings(stack: StackInfo, database_url: str, edc_url: str, **overrides: Any) -> ProvisionerSettings:
    """Provisioner settings for the local stack, with fast retries for tests."""
    values: dict[str, Any] = {
        "api_image": overrides.get("api_image") or api_image(),
        "database_url": database_url,
        "assets_dir": ASSETS,
        "kubeconfig": stack.kubeconfig,
        "s3_endpoint": stack.s3_host,
        "s3_admin_access_key": stack.s3_access_key,
        "s3_admin_secret_key": stack.s3_secret_key,
        "s3_bucket": stack.bucket,
        "argo_server_url": stack.argo_server_url,
        "argo_verify_tls": False,
        # Tenant APIs are handed out as ingress URLs and routed by the stack's ingress controller, as in production.
        "api_url_template": f"{stack.ingress_url}/tenants/{{tenant}}/",
        "ingress_class": stack.ingress_class,
        "ingress_namespace": stack.ingress_namespace,
        "edc_api_key": API_KEY,
        "edc_inbound_key": INBOUND_KEY,
        "edc_management_url": f"{edc_url}/management",
        "signaling_control_url": f"{edc_url}/control",
        "dps_control_url": f"{edc_url}/dps",
        "signaling_inbound_key": SIGNALING_KEY,
        "admin_token": ADMIN_TOKEN,
        "reconcile_interval_seconds": 0.5,
        "retry_base_seconds": 0.2,
        "retry_max_seconds": 2.0,
        "callback_max_attempts": 4,
        "http_timeout_seconds": 5.0,
        # as the local overlay: one 2-core node holds many tenants
        "api_requests_cpu": "10m",
        # one API pod per test tenant: the suite starts some hundred tenants on 2 cores; the two-pod shape (the
        # default) is tested where it matters (test_api_pods.py, test_tenants.py)
        "api_replicas": 1,
        # each test's provisioner leads at once (its own Lease); the HA test gives two replicas the same one
        "leader_lease_namespace": "default",
        "leader_lease_name": f"wml-test-{uuid.uuid4().hex[:10]}",
    }
    values.update(overrides)
    return ProvisionerSettings(**values)


# (apiVersion, kind, name) of everything a tenant is made of, besides its Namespace.
TENANT_OBJECTS = [
    ("v1", "ServiceAccount", "wml-api"),
    ("v1", "ServiceAccount", "wml-worker"),
    ("rbac.authorization.k8s.io/v1", "Role", "wml-api"),
    ("rbac.authorization.k8s.io/v1", "Role", "wml-worker"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding", "wml-api"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding", "wml-worker"),
    ("v1", "Secret", "wml-s3"),
    ("v1", "Secret", "wml-api-env"),
    ("v1", "Secret", "wml-api-tokens"),
    ("v1", "ConfigMap", "wml-api-config"),
    ("v1", "ConfigMap", "artifact-repositories"),
    ("v1", "ResourceQuota", "wml-quota"),
    ("v1", "LimitRange", "wml-limits"),
    ("networking.k8s.io/v1", "NetworkPolicy", "wml-default-deny"),
    ("networking.k8s.io/v1", "NetworkPolicy", "wml-workers"),
    ("networking.k8s.io/v1", "NetworkPolicy", "wml-api"),
    ("apps/v1", "Deployment", "wml-api"),
    ("v1", "Service", "wml-api"),
    ("networking.k8s.io/v1", "Ingress", "wml-api"),
    ("policy/v1", "PodDisruptionBudget", "wml-api"),
]
LABELLED_KINDS = sorted({(v, k) for v, k, _ in TENANT_OBJECTS} | {("argoproj.io/v1alpha1", "WorkflowTemplate")})


def secret_data(svc: Services, namespace: str, name: str) -> dict[str, str]:
    secret = svc.kube.get("v1", "Secret", name, namespace) or {}
    return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


def managed_objects(svc: Services, namespace: str) -> set[tuple[str, str]]:
    """(kind, name) of every object in ``namespace`` carrying our managed-by label."""
    selector = f"{LABEL_MANAGED_BY}={MANAGER}"
    found: set[tuple[str, str]] = set()
    for api_version, kind in LABELLED_KINDS:
        if kind == "Namespace":
            continue
        for item in svc.kube.list(api_version, kind, namespace, selector):
            found.add((kind, item["metadata"]["name"]))
    return found


def expected_objects(assets: list[str], grants: list[int] | tuple[int, ...] = ()) -> set[tuple[str, str]]:
    """What a tenant with these assets and these active grants (one token Secret each) consists of."""
    return (
        {(k, n) for _, k, n in TENANT_OBJECTS}
        | {("WorkflowTemplate", f"wml-{a}") for a in assets}
        | {("Secret", grant_token_secret_name(g)) for g in grants}
    )


def tenant_s3(svc: Services, tenant_id: str, executor: bool = False) -> Minio:
    """The tenant API's S3 client (whole prefix), or with ``executor`` the narrow one of Argo's executor."""
    namespace = svc.settings.namespace_for(tenant_id)
    if executor:
        creds = secret_data(svc, namespace, S3_SECRET)
        access, secret = creds["accessKey"], creds["secretKey"]
    else:
        env = secret_data(svc, namespace, API_ENV_SECRET)
        access, secret = env["WML_API_S3_ACCESS_KEY"], env["WML_API_S3_SECRET_KEY"]
    return Minio(svc.settings.s3_endpoint, access_key=access, secret_key=secret, secure=False)


def put(client: Minio, bucket: str, key: str, data: bytes = b"hello") -> None:
    client.put_object(bucket, key, io.BytesIO(data), len(data))


def s3_denied(call: Any) -> bool:
    try:
        call()
    except S3Error as exc:
        return exc.code in {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"}
    return False


def counts(svc: Services) -> tuple[int, int]:
    """(grants, tenants) in the provisioner's database."""
    with svc.sessions() as session:
        return (
            session.scalar(select(func.count()).select_from(Grant)) or 0,
            session.scalar(select(func.count()).select_from(Tenant)) or 0,
        )


def db_tenant(svc: Services, tenant_id: str) -> Tenant | None:
    with svc.sessions() as session:
        return session.get(Tenant, tenant_id)


def db_grants(svc: Services, tenant_id: str | None = None) -> list[Grant]:
    with svc.sessions() as session:
        query = select(Grant).order_by(Grant.id)
        if tenant_id:
            query = query.where(Grant.tenant_id == tenant_id)
        return list(session.scalars(query))


def kube_as(svc: Services, token: str) -> httpx.Client:
    """A client of the real API server that authenticates with ``token`` (a ServiceAccount's)."""
    cfg = svc.kube.api.configuration
    return httpx.Client(
        base_url=cfg.host,
        verify=ssl.create_default_context(cafile=cfg.ssl_ca_cert),
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
