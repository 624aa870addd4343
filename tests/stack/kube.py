"""Kubernetes objects the stack installs (Argo CRDs, its namespace and configuration) and small
helpers tests need: server-side apply, executor RBAC for a namespace, ServiceAccount tokens."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.dynamic import DynamicClient

from . import config
from .config import Layout

FIELD_MANAGER = "wml-stack"
EXECUTOR_ROLE = "wml-argo-executor"


def api_client(kubeconfig: Path) -> k8s.ApiClient:
    return k8s_config.new_client_from_config(config_file=str(kubeconfig))


def dynamic(api: k8s.ApiClient, layout: Layout | None = None) -> DynamicClient:
    cache = str(layout.state / "discovery-cache.json") if layout else None
    return DynamicClient(api, cache_file=cache)


def apply(dyn: DynamicClient, manifests: Iterable[dict[str, Any]]) -> None:
    """Server-side apply each manifest (idempotent; we own the fields we set)."""
    for m in manifests:
        resource = dyn.resources.get(api_version=m["apiVersion"], kind=m["kind"])
        meta = m["metadata"]
        dyn.server_side_apply(
            resource,
            body=m,
            name=meta["name"],
            namespace=meta.get("namespace"),
            field_manager=FIELD_MANAGER,
            force_conflicts=True,
        )


def load_yaml_dir(directory: Path) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(directory.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def wait_crds_established(api: k8s.ApiClient, names: list[str], timeout: float = 60) -> None:
    ext = k8s.ApiextensionsV1Api(api)
    deadline = time.monotonic() + timeout
    pending = set(names)
    while pending and time.monotonic() < deadline:
        for name in list(pending):
            crd = ext.read_custom_resource_definition(name)
            conds = crd.status.conditions or [] if crd.status else []
            if any(c.type == "Established" and c.status == "True" for c in conds):
                pending.discard(name)
        if pending:
            time.sleep(0.5)
    if pending:
        raise RuntimeError(f"CRDs not established: {sorted(pending)}")


def controller_configmap(layout: Layout) -> dict[str, Any]:
    """Argo's controller configuration for this stack (no default artifact repository on purpose:
    templates must carry their own S3 location)."""
    data = {
        "executor": yaml.safe_dump({"imagePullPolicy": "IfNotPresent"}),
        # Known entrypoints, so the controller never asks a registry for an image's command.
        "images": yaml.safe_dump({config.DUMMY_JOB_IMAGE: {"cmd": ["/bin/sh", "entrypoint.sh"]}}),
    }
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "workflow-controller-configmap", "namespace": config.ARGO_NAMESPACE},
        "data": data,
    }


def install_argo(layout: Layout, api: k8s.ApiClient) -> None:
    dyn = dynamic(api, layout)
    crds = load_yaml_dir(layout.argo_src / "manifests" / "base" / "crds" / "full")
    apply(dyn, crds)
    wait_crds_established(api, [c["metadata"]["name"] for c in crds])
    apply(
        dyn,
        [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": config.ARGO_NAMESPACE}},
            controller_configmap(layout),
            executor_cluster_role(),
        ],
    )


def executor_cluster_role() -> dict[str, Any]:
    """What Argo's executor (init/wait containers of a workflow pod) needs in its namespace."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": EXECUTOR_ROLE},
        "rules": [{"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"], "verbs": ["create", "patch"]}],
    }


def grant_executor(api: k8s.ApiClient, namespace: str, service_account: str = "default") -> None:
    """Bind Argo's executor ClusterRole to `service_account` in `namespace` (idempotent)."""
    apply(
        dynamic(api),
        [
            executor_cluster_role(),
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": f"{EXECUTOR_ROLE}-{service_account}", "namespace": namespace},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": EXECUTOR_ROLE,
                },
                "subjects": [{"kind": "ServiceAccount", "name": service_account, "namespace": namespace}],
            },
        ],
    )


def service_account_token(api: k8s.ApiClient, namespace: str, name: str, seconds: int = 3600) -> str:
    """A bound token for a ServiceAccount (TokenRequest API), e.g. as Argo Server bearer token."""
    req = k8s.AuthenticationV1TokenRequest(spec=k8s.V1TokenRequestSpec(audiences=[], expiration_seconds=seconds))
    resp = k8s.CoreV1Api(api).create_namespaced_service_account_token(name, namespace, req)
    return str(resp.status.token)


def wait_node_ready(api: k8s.ApiClient, node: str, timeout: float = 120) -> None:
    core = k8s.CoreV1Api(api)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conds = core.read_node(node).status.conditions or []
            if any(c.type == "Ready" and c.status == "True" for c in conds):
                return
        except k8s.ApiException as exc:
            if exc.status != 404:
                raise
        time.sleep(1)
    raise RuntimeError(f"node {node} not Ready after {timeout:.0f}s")


def node_ready(api: k8s.ApiClient, node: str) -> bool:
    try:
        conds = k8s.CoreV1Api(api).read_node(node).status.conditions or []
    except Exception:  # any error means "not ready"
        return False
    return any(c.type == "Ready" and c.status == "True" for c in conds)


def delete_all_pods(api: k8s.ApiClient, timeout: float = 30) -> None:
    """Delete every pod and wait until the kubelet has confirmed (containers and sandboxes gone)."""
    core = k8s.CoreV1Api(api)
    core_pods = core.list_pod_for_all_namespaces().items
    for pod in core_pods:
        try:
            core.delete_namespaced_pod(pod.metadata.name, pod.metadata.namespace, grace_period_seconds=1)
        except k8s.ApiException as exc:
            if exc.status != 404:
                raise
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and core.list_pod_for_all_namespaces().items:
        time.sleep(0.5)
