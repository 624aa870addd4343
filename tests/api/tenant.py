"""A tenant namespace prepared as the provisioner prepares it, and a consumer API serving it (tests, benchmarks)."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kubernetes import client as k8s

from api.app import create_app
from api.client import Client
from api.settings import ApiSettings
from templates import CompileOptions, StorageTarget, WorkflowAsset, compile_asset, load_directory
from tests.servers import serve
from tests.stack import kube

EXAMPLES = Path(__file__).resolve().parents[2] / "templates" / "examples"

API_ROLE_RULES = [
    k8s.V1PolicyRule(
        api_groups=["argoproj.io"],
        resources=["workflows"],
        verbs=["get", "list", "watch", "create", "update", "patch", "delete"],
    ),
    k8s.V1PolicyRule(api_groups=["argoproj.io"], resources=["workflowtemplates"], verbs=["get", "list", "watch"]),
    k8s.V1PolicyRule(api_groups=[""], resources=["pods", "pods/log", "events"], verbs=["get", "list", "watch"]),
    k8s.V1PolicyRule(api_groups=[""], resources=["secrets"], verbs=["create", "update", "patch", "delete"]),
]


@dataclass
class ApiTenant:
    name: str
    namespace: str
    url: str
    token: str
    settings: ApiSettings

    def client(self, token: str | None = None) -> Client:
        return Client(self.url, token or self.token)


def prepare_namespace(
    stack, api: k8s.ApiClient, tenant: str, namespace: str, extra: tuple[WorkflowAsset, ...] = ()
) -> str:
    core, rbac = k8s.CoreV1Api(api), k8s.RbacAuthorizationV1Api(api)
    # Labelled as the provisioner labels tenant namespaces, so the tenant API's admission policy applies.
    labels = {"app.kubernetes.io/managed-by": "workflow-middlelayer", "workflow-middlelayer.io/tenant": tenant}
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=namespace, labels=labels)))
    core.create_namespaced_secret(
        namespace,
        k8s.V1Secret(
            metadata=k8s.V1ObjectMeta(name="wml-s3"),
            string_data={"accessKey": stack.s3_access_key, "secretKey": stack.s3_secret_key},
        ),
    )
    for sa in ("wml-worker", "wml-api"):
        core.create_namespaced_service_account(namespace, k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name=sa)))
    kube.grant_executor(api, namespace, "wml-worker")
    # Argo mounts the executor's token from "<sa>.service-account-token" when pods do not automount one.
    core.create_namespaced_secret(
        namespace,
        k8s.V1Secret(
            metadata=k8s.V1ObjectMeta(
                name="wml-worker.service-account-token",
                annotations={"kubernetes.io/service-account.name": "wml-worker"},
            ),
            type="kubernetes.io/service-account-token",
        ),
    )
    rbac.create_namespaced_role(namespace, k8s.V1Role(metadata=k8s.V1ObjectMeta(name="wml-api"), rules=API_ROLE_RULES))
    rbac.create_namespaced_role_binding(
        namespace,
        k8s.V1RoleBinding(
            metadata=k8s.V1ObjectMeta(name="wml-api"),
            role_ref=k8s.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="wml-api"),
            subjects=[k8s.RbacV1Subject(kind="ServiceAccount", name="wml-api", namespace=namespace)],
        ),
    )
    target = StorageTarget(
        endpoint=stack.s3_host,
        bucket=stack.bucket,
        prefix=f"tenants/{tenant}",
        credentials_secret="wml-s3",
        insecure=True,
    )
    custom = k8s.CustomObjectsApi(api)
    for asset in [*load_directory(EXAMPLES).values(), *extra]:
        manifest = compile_asset(asset, target, CompileOptions(namespace=namespace, tenant=tenant)).to_dict()
        custom.create_namespaced_custom_object("argoproj.io", "v1alpha1", namespace, "workflowtemplates", manifest)
    return kube.service_account_token(api, namespace, "wml-api")


@contextmanager
def api_tenant(
    stack, label: str = "api", extra_assets: tuple[WorkflowAsset, ...] = (), **overrides: object
) -> Iterator[ApiTenant]:
    """A fresh tenant namespace with the example assets registered, and its API served on loopback."""
    tenant = f"t-{label}-{uuid.uuid4().hex[:6]}"
    namespace = f"wml-{tenant}"
    api = kube.api_client(stack.kubeconfig)
    sa_token = prepare_namespace(stack, api, tenant, namespace, extra_assets)
    token = secrets.token_urlsafe(32)
    settings = ApiSettings(
        tenant=tenant,
        namespace=namespace,
        contract_id=f"contract-{tenant}",
        token_sha256=hashlib.sha256(token.encode()).hexdigest(),
        s3_endpoint_url=stack.s3_endpoint,
        s3_access_key=stack.s3_access_key,
        s3_secret_key=stack.s3_secret_key,
        s3_bucket=stack.bucket,
        s3_prefix=f"tenants/{tenant}",
        argo_server_url=stack.argo_server_url,
        argo_token=sa_token,
        argo_verify_tls=False,
        kube_api_url=api.configuration.host,
        kube_ca_file=api.configuration.ssl_ca_cert,
        quota_concurrent_jobs=3,
    ).model_copy(update=overrides)
    try:
        with serve(create_app(settings)) as url:
            yield ApiTenant(tenant, namespace, url, token, settings)
    finally:
        k8s.CoreV1Api(api).delete_namespace(namespace, propagation_policy="Background")
