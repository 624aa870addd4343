"""The tenant API's serving objects: its Deployment (hardened, probed every second), Service,
PodDisruptionBudget and, where the operator enables it, its Ingress."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from provisioner.infra.settings import ProvisionerSettings
from provisioner.manifests.config import api_env
from provisioner.manifests.spec import TenantSpec, _meta, _obj
from templates.labels import ANNOTATION_ENV_CHECKSUM, LABEL_MANAGED_BY, LABEL_NAME, LABEL_TENANT, MANAGER
from templates.names import API, API_ENV_CONFIGMAP, API_ENV_SECRET


def api_objects(settings: ProvisionerSettings, spec: TenantSpec) -> list[dict[str, Any]]:
    labels = {LABEL_NAME: API, LABEL_TENANT: spec.tenant}
    plain, secret = api_env(settings, spec)
    # A checksum of the environment restarts the pods when credentials or settings change; not when a token
    # comes or goes: the API re-reads the token Secret itself (api/tokens.py).
    settled = {k: v for k, v in secret.items() if k not in ("WML_API_TOKEN_SHA256", "WML_API_TOKEN_SCOPES")}
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
            "selector": {"matchLabels": {LABEL_NAME: API}},
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
            "selector": {LABEL_NAME: API},
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
            spec={"maxUnavailable": 1, "selector": {"matchLabels": {LABEL_NAME: API}}},
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
