"""The tenant's namespace and what bounds it: the Namespace (pod security), its ServiceAccounts with
least-privilege Roles, its ResourceQuota and LimitRange."""

from __future__ import annotations

from typing import Any

from provisioner.infra.settings import ProvisionerSettings
from provisioner.manifests.spec import TenantSpec, _meta, _obj
from templates.labels import LABEL_MANAGED_BY, LABEL_TENANT, MANAGER
from templates.names import API, API_START_LEASE, API_STORAGE_LEASE, API_TOKENS_SECRET, LIMITS, QUOTA, WORKER


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
        # A finished job's pods, once the API has stored their logs (the admission policy: job pods only). That
        # ends the executor's projected token, which is bound to its pod.
        _rule([""], ["pods"], ["delete"]),
        _rule([""], ["pods/log"], ["get"]),
        _rule([""], ["events"], ["list", "watch"]),
        # The start lock and the storage quota's shared book of several API replicas (api/backends/startlock.py,
        # leasebook.py): create cannot be limited to a name in RBAC.
        _rule(["coordination.k8s.io"], ["leases"], ["create"]),
        _rule(["coordination.k8s.io"], ["leases"], ["get", "update", "delete"], [API_START_LEASE, API_STORAGE_LEASE]),
    ]
    # What argoexec (emissary) needs: report outputs as WorkflowTaskResults. Nothing else (its S3 credentials
    # arrive as a mounted Secret, not through the API). Its token is projected into the pod by the compiled
    # template's podSpecPatch: bound to the pod, short-lived; no long-lived token Secret exists for it.
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
    return objects


def quota(settings: ProvisionerSettings, spec: TenantSpec) -> list[dict[str, Any]]:
    hard: dict[str, str] = {
        "requests.cpu": settings.quota_cpu,
        "limits.cpu": settings.quota_cpu,
        "requests.memory": settings.quota_memory,
        "limits.memory": settings.quota_memory,
        "requests.ephemeral-storage": settings.quota_ephemeral_storage,
        # Limits too: a quota on requests alone lets a pod that declares little use the node's whole disk.
        "limits.ephemeral-storage": settings.quota_ephemeral_storage,
        "pods": str(settings.quota_pods),
        "services.loadbalancers": "0",
        "services.nodeports": "0",
    }
    gpu_resources = {a.resources.gpu.resource for a in spec.assets if a.resources.gpu} or {"nvidia.com/gpu"}
    for resource in sorted(gpu_resources):
        hard[f"requests.{resource}"] = str(settings.quota_gpus)
    limits = {
        "type": "Container",
        "default": {
            "cpu": settings.limit_default_cpu,
            "memory": settings.limit_default_memory,
            "ephemeral-storage": settings.limit_default_ephemeral_storage,
        },
        "defaultRequest": {
            "cpu": settings.limit_default_request_cpu,
            "memory": settings.limit_default_request_memory,
            "ephemeral-storage": settings.limit_default_request_ephemeral_storage,
        },
    }
    return [
        _obj("v1", "ResourceQuota", _meta(spec, QUOTA), spec={"hard": hard}),
        _obj("v1", "LimitRange", _meta(spec, LIMITS), spec={"limits": [limits]}),
    ]
