"""Builders of a tenant's Kubernetes objects (plain manifests, applied with server-side apply).

Pure functions of the settings and a :class:`TenantSpec`; nothing here talks to a server.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import yaml

from provisioner.infra.settings import ProvisionerSettings
from templates import CompileOptions, StorageTarget, WorkflowAsset, compile_asset
from templates.keys import JOB_NAME_PLACEHOLDER, POD_NAME_PLACEHOLDER, KeyLayout
from templates.labels import ANNOTATION_ENV_CHECKSUM
from templates.labels import LABEL_GRANT as LABEL_GRANT
from templates.labels import LABEL_MANAGED_BY as LABEL_MANAGED_BY
from templates.labels import LABEL_TENANT as LABEL_TENANT
from templates.labels import MANAGER as MANAGER
from templates.names import API_START_LEASE

API = "wml-api"
WORKER = "wml-worker"
S3_SECRET = "wml-s3"  # the executor's S3 credentials (scoped to job inputs, outputs and logs)
GRANT_TOKEN_PREFIX = "wml-grant-"  # one Secret per grant with its token in full; read only by the provisioner
API_ENV_SECRET = "wml-api-env"
API_TOKENS_SECRET = "wml-api-tokens"  # the live grants' token digests, re-read by the API (no restart for a token)
API_ENV_CONFIGMAP = "wml-api-config"
ARTIFACT_REPOSITORIES = "artifact-repositories"
WORKFLOW_POD_LABEL = "workflows.argoproj.io/workflow"
SECRET_ENV_KEYS = ("WML_API_S3_ACCESS_KEY", "WML_API_S3_SECRET_KEY", "WML_API_TOKEN_SHA256")


def tenant_id_for(consumer_id: str) -> str:
    """A stable, DNS-safe tenant id for a new consumer: 120 bits of its sha256, so that no one can choose a
    participant id that maps onto another consumer's tenant. (Tenants are found by their consumer id, never by
    this hash alone; tenants made before it was lengthened keep their 48-bit ids.)"""
    return "t-" + hashlib.sha256(consumer_id.encode()).hexdigest()[:30]


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def grant_token_secret_name(grant_id: int) -> str:
    return f"{GRANT_TOKEN_PREFIX}{grant_id}"


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
    assets: list[WorkflowAsset] = field(default_factory=list)


def _meta(spec: TenantSpec, name: str, **extra: Any) -> dict[str, Any]:
    labels = {LABEL_MANAGED_BY: MANAGER, LABEL_TENANT: spec.tenant, **extra.pop("labels", {})}
    return {"name": name, "namespace": spec.namespace, "labels": labels, **extra}


def _obj(api_version: str, kind: str, metadata: dict[str, Any], **body: Any) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata, **body}


def namespace(settings: ProvisionerSettings, spec: TenantSpec) -> dict[str, Any]:
    level = settings.pod_security_level
    labels = {
        LABEL_MANAGED_BY: MANAGER,
        LABEL_TENANT: spec.tenant,
        "pod-security.kubernetes.io/enforce": level,
        "pod-security.kubernetes.io/warn": "restricted",
        "pod-security.kubernetes.io/audit": "restricted",
    }
    return _obj("v1", "Namespace", {"name": spec.namespace, "labels": labels})


def _rule(groups: list[str], resources: list[str], verbs: list[str], names: list[str] | None = None) -> dict[str, Any]:
    rule: dict[str, Any] = {"apiGroups": groups, "resources": resources, "verbs": verbs}
    if names:
        rule["resourceNames"] = names
    return rule


def rbac(spec: TenantSpec) -> list[dict[str, Any]]:
    """The API's account (Argo Server client auth uses its token) and the workflow pods' account."""
    api_rules = [
        _rule(["argoproj.io"], ["workflows"], ["get", "list", "watch", "create", "update", "patch", "delete"]),
        # Each job's environment Secret: written, owned by its Workflow, deleted; never read back. The
        # admission policy in argo/base/admission limits these to job-*-env Secrets.
        _rule([""], ["secrets"], ["create", "update", "patch", "delete"]),
        # The live token digests (no tokens, no keys): the one Secret the API may read.
        _rule([""], ["secrets"], ["get"], [API_TOKENS_SECRET]),
        _rule(["argoproj.io"], ["workflowtemplates"], ["get", "list", "watch"]),
        _rule([""], ["pods"], ["get", "list", "watch"]),
        _rule([""], ["pods/log"], ["get"]),
        _rule([""], ["events"], ["list", "watch"]),
        # The start lock of several API replicas (api/startlock.py): create cannot be limited to a name in RBAC.
        _rule(["coordination.k8s.io"], ["leases"], ["create"]),
        _rule(["coordination.k8s.io"], ["leases"], ["get", "update", "delete"], [API_START_LEASE]),
    ]
    # What argoexec (emissary) needs: report outputs as WorkflowTaskResults. Nothing else (its S3 credentials
    # arrive as a mounted Secret, not through the API).
    worker_rules = [_rule(["argoproj.io"], ["workflowtaskresults"], ["create", "patch"])]
    objects: list[dict[str, Any]] = []
    for name, rules, automount in ((API, api_rules, True), (WORKER, worker_rules, False)):
        objects.append(_obj("v1", "ServiceAccount", _meta(spec, name), automountServiceAccountToken=automount))
        objects.append(_obj("rbac.authorization.k8s.io/v1", "Role", _meta(spec, name), rules=rules))
        objects.append(
            _obj(
                "rbac.authorization.k8s.io/v1",
                "RoleBinding",
                _meta(spec, name),
                roleRef={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                subjects=[{"kind": "ServiceAccount", "name": name, "namespace": spec.namespace}],
            )
        )
    # Argo mounts the executor's token from "<sa>.service-account-token" when the pod does not automount.
    objects.append(
        _obj(
            "v1",
            "Secret",
            _meta(spec, f"{WORKER}.service-account-token", annotations={"kubernetes.io/service-account.name": WORKER}),
            type="kubernetes.io/service-account-token",
        )
    )
    return objects


def quota(settings: ProvisionerSettings, spec: TenantSpec) -> list[dict[str, Any]]:
    hard: dict[str, str] = {
        "requests.cpu": settings.quota_cpu,
        "limits.cpu": settings.quota_cpu,
        "requests.memory": settings.quota_memory,
        "limits.memory": settings.quota_memory,
        "requests.ephemeral-storage": settings.quota_ephemeral_storage,
        "pods": str(settings.quota_pods),
        "services.loadbalancers": "0",
        "services.nodeports": "0",
    }
    gpu_resources = {a.resources.gpu.resource for a in spec.assets if a.resources.gpu} or {"nvidia.com/gpu"}
    for resource in sorted(gpu_resources):
        hard[f"requests.{resource}"] = str(settings.quota_gpus)
    limits = {
        "type": "Container",
        "default": {"cpu": settings.limit_default_cpu, "memory": settings.limit_default_memory},
        "defaultRequest": {"cpu": settings.limit_default_request_cpu, "memory": settings.limit_default_request_memory},
    }
    return [
        _obj("v1", "ResourceQuota", _meta(spec, "wml-quota"), spec={"hard": hard}),
        _obj("v1", "LimitRange", _meta(spec, "wml-limits"), spec={"limits": [limits]}),
    ]


def _port_of(endpoint: str, default: int) -> int:
    return urlsplit(f"//{endpoint}").port or default


def _cidr_peers(cidrs: list[str], ports: list[int]) -> list[dict[str, Any]]:
    if not cidrs:
        return []
    return [{"to": [{"ipBlock": {"cidr": c}} for c in cidrs], "ports": [{"protocol": "TCP", "port": p} for p in ports]}]


NON_PUBLIC_V4 = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "224.0.0.0/3",
]


def network_policies(settings: ProvisionerSettings, spec: TenantSpec) -> list[dict[str, Any]]:
    dns = {
        "to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    }
    s3 = _cidr_peers(settings.s3_egress_cidrs, [_port_of(settings.s3_endpoint, 443 if settings.s3_secure else 80)])
    kube_api = _cidr_peers(settings.kube_api_egress_cidrs, settings.kube_api_egress_ports)
    argo_port = urlsplit(settings.argo_server_url).port or 2746
    argo = [
        *_cidr_peers(settings.argo_server_egress_cidrs, [argo_port]),
        {
            "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": settings.argo_namespace}}}],
            "ports": [{"protocol": "TCP", "port": argo_port}],
        },
    ]
    # Webhooks go to public addresses (any port), never to private, link-local or loopback ranges, except the
    # networks the operator allows; the API checks the same again on every delivery (api/webhooks/targets.py).
    hooks: list[dict[str, Any]] = []
    if settings.webhook_egress:
        hooks.append({"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": NON_PUBLIC_V4}}]})
        hooks.extend({"to": [{"ipBlock": {"cidr": c}}]} for c in settings.webhook_allowed_networks)
    np = "networking.k8s.io/v1"
    return [
        _obj(
            np,
            "NetworkPolicy",
            _meta(spec, "wml-default-deny"),
            spec={"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
        ),
        # Workflow pods: no ingress; egress only to S3 (artifacts), DNS, and the Kubernetes API that
        # argoexec's wait container reports to. The worker container shares the pod's network.
        _obj(
            np,
            "NetworkPolicy",
            _meta(spec, "wml-workers"),
            spec={
                "podSelector": {"matchExpressions": [{"key": WORKFLOW_POD_LABEL, "operator": "Exists"}]},
                "policyTypes": ["Ingress", "Egress"],
                "egress": [dns, *s3, *kube_api],
            },
        ),
        # The API: ingress only from the ingress controller's namespace; egress to S3, Argo Server, DNS, the
        # Kubernetes API (job environment Secrets) and webhook receivers.
        _obj(
            np,
            "NetworkPolicy",
            _meta(spec, API),
            spec={
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": API}},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [
                    {
                        "from": [
                            {
                                "namespaceSelector": {
                                    "matchLabels": {"kubernetes.io/metadata.name": settings.ingress_namespace}
                                }
                            }
                        ],
                        "ports": [{"protocol": "TCP", "port": settings.api_port}],
                    }
                ],
                "egress": [dns, *s3, *argo, *kube_api, *hooks],
            },
        ),
    ]


def api_env(settings: ProvisionerSettings, spec: TenantSpec) -> tuple[dict[str, str], dict[str, str]]:
    """The tenant API's environment (``api.settings.ApiSettings``): (plain values, secret values)."""
    plain = {
        "WML_API_TENANT": spec.tenant,
        "WML_API_NAMESPACE": spec.namespace,
        "WML_API_CONTRACT_ID": spec.contract_id,
        "WML_API_S3_ENDPOINT_URL": settings.s3_endpoint_url(),
        "WML_API_S3_BUCKET": settings.s3_bucket,
        "WML_API_S3_PREFIX": settings.s3_prefix_for(spec.tenant),
        "WML_API_ARGO_SERVER_URL": settings.argo_server_url,
        "WML_API_ARGO_VERIFY_TLS": "true" if settings.argo_verify_tls else "false",
        "WML_API_QUOTA_CONCURRENT_JOBS": str(settings.quota_concurrent_jobs),
        "WML_API_QUOTA_STORAGE_BYTES": str(settings.quota_storage_bytes),
        "WML_API_TOKEN_SECRET": API_TOKENS_SECRET,
        "WML_API_TOKEN_REFRESH_SECONDS": str(settings.api_token_refresh_seconds),
        # Several replicas serialise job starts through a Lease; one needs only its own lock.
        "WML_API_START_LOCK": "lease" if settings.api_replicas > 1 else "process",
    }
    if settings.s3_region:
        plain["WML_API_S3_REGION"] = settings.s3_region
    if settings.argo_ui_url:
        plain["WML_API_ARGO_UI_URL"] = settings.argo_ui_url
    if settings.webhook_allow_http:
        plain["WML_API_WEBHOOK_ALLOW_HTTP"] = "true"
    if settings.webhook_allowed_networks:
        plain["WML_API_WEBHOOK_ALLOWED_NETWORKS"] = json.dumps(settings.webhook_allowed_networks)
    # Behind the ingress path the API sees the full path: tell it its prefix (from the URL actually handed out).
    if settings.ingress_enabled and settings.api_url_for(spec.tenant).rstrip("/").endswith(
        settings.ingress_path_template.format(tenant=spec.tenant).rstrip("/")
    ):
        plain["WML_API_ROOT_PATH"] = settings.ingress_path_template.format(tenant=spec.tenant).rstrip("/")
    secret = {
        "WML_API_S3_ACCESS_KEY": spec.s3_access_key,
        "WML_API_S3_SECRET_KEY": spec.s3_secret_key,
        "WML_API_TOKEN_SHA256": ",".join(sorted(spec.token_digests)),
    }
    return plain, secret


def storage_target(settings: ProvisionerSettings, spec: TenantSpec) -> StorageTarget:
    return StorageTarget(
        endpoint=settings.s3_endpoint,
        bucket=settings.s3_bucket,
        prefix=settings.s3_prefix_for(spec.tenant),
        credentials_secret=S3_SECRET,
        insecure=not settings.s3_secure,
        region=settings.s3_region,
    )


def config_objects(settings: ProvisionerSettings, spec: TenantSpec) -> list[dict[str, Any]]:
    """S3 credentials, the API's environment, and the namespace's artifact repository."""
    plain, secret = api_env(settings, spec)
    target = storage_target(settings, spec)
    keys = KeyLayout(target.prefix)
    repository = {
        "archiveLogs": True,
        "s3": {
            "endpoint": target.endpoint,
            "bucket": target.bucket,
            "insecure": target.insecure,
            **({"region": target.region} if target.region else {}),
            "keyFormat": f"{keys.job_artifacts(JOB_NAME_PLACEHOLDER)}/{POD_NAME_PLACEHOLDER}",
            "accessKeySecret": {"name": S3_SECRET, "key": target.access_key_key},
            "secretKeySecret": {"name": S3_SECRET, "key": target.secret_key_key},
        },
    }
    return [
        _obj(
            "v1",
            "Secret",
            _meta(spec, S3_SECRET),
            type="Opaque",
            stringData={"accessKey": spec.exec_access_key, "secretKey": spec.exec_secret_key},
        ),
        _obj("v1", "Secret", _meta(spec, API_ENV_SECRET), type="Opaque", stringData=secret),
        _obj(
            "v1",
            "Secret",
            _meta(spec, API_TOKENS_SECRET),
            type="Opaque",
            stringData={"sha256": ",".join(sorted(spec.token_digests))},
        ),
        _obj("v1", "ConfigMap", _meta(spec, API_ENV_CONFIGMAP), data=plain),
        _obj(
            "v1",
            "ConfigMap",
            _meta(
                spec,
                ARTIFACT_REPOSITORIES,
                annotations={"workflows.argoproj.io/default-artifact-repository": "default"},
            ),
            data={"default": yaml.safe_dump(repository, sort_keys=True)},
        ),
    ]


def grant_token_secret(spec: TenantSpec, grant_id: int, token: str) -> dict[str, Any]:
    return _obj(
        "v1",
        "Secret",
        _meta(spec, grant_token_secret_name(grant_id), labels={LABEL_GRANT: str(grant_id)}),
        type="Opaque",
        stringData={"token": token, "sha256": token_sha256(token)},
    )


def api_objects(settings: ProvisionerSettings, spec: TenantSpec) -> list[dict[str, Any]]:
    labels = {"app.kubernetes.io/name": API, LABEL_TENANT: spec.tenant}
    plain, secret = api_env(settings, spec)
    # A checksum of the environment restarts the pods when credentials or settings change; not when a token
    # comes or goes: the API re-reads the token Secret itself (api/tokens.py).
    settled = {k: v for k, v in secret.items() if k != "WML_API_TOKEN_SHA256"}
    checksum = hashlib.sha256(json.dumps([plain, settled], sort_keys=True).encode()).hexdigest()[:16]
    container = {
        "name": "api",
        "image": settings.api_image,
        "imagePullPolicy": "IfNotPresent",
        "command": settings.api_command,
        "ports": [{"name": "http", "containerPort": settings.api_port}],
        "envFrom": [{"configMapRef": {"name": API_ENV_CONFIGMAP}}, {"secretRef": {"name": API_ENV_SECRET}}],
        # Probed every second: a new tenant's endpoint works as soon as its API does (the Service waits for Ready).
        # The server listens before it imports the application (api.server): a probe made while it starts waits
        # for the answer (timeoutSeconds) instead of failing and leaving the pod unready for another second. The
        # price: a pod that hangs while serving is taken out of the Service after ~9 s instead of ~3 s.
        "readinessProbe": {
            "httpGet": {"path": "/healthz", "port": "http"},
            "periodSeconds": 1,
            "timeoutSeconds": 3,
            "failureThreshold": 3,
        },
        "resources": {
            "requests": {
                "cpu": settings.api_requests_cpu,
                "memory": settings.api_requests_memory,
                "ephemeral-storage": "64Mi",
            },
            # Uploads stream to S3 and are never spooled, so the API needs almost no disk; a cap keeps it so.
            "limits": {
                "cpu": settings.api_limits_cpu,
                "memory": settings.api_limits_memory,
                "ephemeral-storage": "256Mi",
            },
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    deployment = _obj(
        "apps/v1",
        "Deployment",
        _meta(spec, API, labels=labels),
        spec={
            "replicas": settings.api_replicas,
            # Changed settings or credentials roll the pods: new ones serve before old ones stop.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            # A rollout that cannot finish is reported by Kubernetes as ProgressDeadlineExceeded: the provisioner
            # never hands it out, counts it as a failed attempt when a failure is named (no room on any node, a
            # crashing image) and waits longer for pods that are only slow (steps.api_answers).
            "progressDeadlineSeconds": settings.api_start_timeout_seconds,
            "selector": {"matchLabels": {"app.kubernetes.io/name": API}},
            "template": {
                "metadata": {
                    "labels": {**labels, LABEL_MANAGED_BY: MANAGER},
                    "annotations": {ANNOTATION_ENV_CHECKSUM: checksum},
                },
                "spec": {
                    "serviceAccountName": API,
                    "automountServiceAccountToken": True,
                    # Replicas on different nodes where there are several: one node's loss is no outage.
                    "topologySpreadConstraints": [
                        {
                            "maxSkew": 1,
                            "topologyKey": "kubernetes.io/hostname",
                            "whenUnsatisfiable": "ScheduleAnyway",
                            "labelSelector": {"matchLabels": labels},
                        }
                    ],
                    "containers": [container],
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "128Mi"}}],
                },
            },
        },
    )
    service = _obj(
        "v1",
        "Service",
        _meta(spec, API, labels=labels),
        spec={
            "selector": {"app.kubernetes.io/name": API},
            "ports": [{"name": "http", "port": settings.api_port, "targetPort": "http"}],
        },
    )
    objects = [deployment, service]
    # A drain or an eviction takes one API pod at a time: the other keeps serving (a single replica may go).
    objects.append(
        _obj(
            "policy/v1",
            "PodDisruptionBudget",
            _meta(spec, API, labels=labels),
            spec={"maxUnavailable": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": API}}},
        )
    )
    if settings.ingress_enabled:
        rule: dict[str, Any] = {
            "http": {
                "paths": [
                    {
                        "path": settings.ingress_path_template.format(tenant=spec.tenant),
                        "pathType": "Prefix",
                        "backend": {"service": {"name": API, "port": {"number": settings.api_port}}},
                    }
                ]
            }
        }
        if settings.ingress_host:
            rule["host"] = settings.ingress_host
        ingress_spec: dict[str, Any] = {"rules": [rule]}
        if settings.ingress_class:
            ingress_spec["ingressClassName"] = settings.ingress_class
        objects.append(_obj("networking.k8s.io/v1", "Ingress", _meta(spec, API, labels=labels), spec=ingress_spec))
    return objects


def workflow_templates(settings: ProvisionerSettings, spec: TenantSpec) -> list[dict[str, Any]]:
    target = storage_target(settings, spec)
    options = CompileOptions(namespace=spec.namespace, tenant=spec.tenant, workflow_service_account=WORKER)
    return [compile_asset(asset, target, options).to_dict() for asset in spec.assets]
