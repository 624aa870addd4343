"""Kubernetes objects the stack installs (Argo CRDs, its namespace and configuration) and small
helpers tests need: server-side apply, executor RBAC for a namespace, ServiceAccount tokens."""

from __future__ import annotations

import hashlib
import json
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
    client: k8s.ApiClient = k8s_config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    return client


def dynamic(api: k8s.ApiClient, layout: Layout | None = None) -> DynamicClient:
    cache = str(layout.state / "discovery-cache.json") if layout else None
    return DynamicClient(api, cache_file=cache)  # type: ignore[no-untyped-call]


def apply(dyn: DynamicClient, manifests: Iterable[dict[str, Any]]) -> None:
    """Server-side apply each manifest (idempotent; we own the fields we set)."""
    for m in manifests:
        resource = dyn.resources.get(api_version=m["apiVersion"], kind=m["kind"])
        meta = m["metadata"]
        dyn.server_side_apply(  # type: ignore[no-untyped-call]
            resource,
            body=m,
            name=meta["name"],
            namespace=meta.get("namespace"),
            field_manager=FIELD_MANAGER,
            force_conflicts=True,
        )


def rolled_out(obj: k8s.V1Deployment) -> bool:
    """A Deployment whose current spec runs with every replica updated and ready."""
    st, meta = obj.status, obj.metadata
    if st is None or meta is None or st.observed_generation != meta.generation:
        return False
    want = (obj.spec.replicas if obj.spec else None) or 0
    return (st.ready_replicas or 0) == want and (st.updated_replicas or 0) == want and (st.replicas or 0) == want


_YamlLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: the CRDs are 11 MB of YAML


def load_yaml_dir(directory: Path) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(directory.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs.extend(d for d in yaml.load_all(path.read_text(), Loader=_YamlLoader) if d)
    return docs


def argo_crds(layout: Layout) -> tuple[list[dict[str, Any]], str]:
    """Argo's CRDs (with schemas) from the pinned module, parsed once and cached as JSON, and a
    digest of them."""
    cache = config.cache_dir() / "argo-crds" / f"{layout.argo_version}.json"
    if not cache.exists():
        cache.parent.mkdir(parents=True, exist_ok=True)
        docs = load_yaml_dir(layout.argo_src / "manifests" / "base" / "crds" / "full")
        tmp = cache.with_suffix(".partial")
        tmp.write_text(json.dumps(docs))
        tmp.rename(cache)
    text = cache.read_text()
    return json.loads(text), hashlib.sha256(text.encode()).hexdigest()[:16]


def _served_resources(dyn: DynamicClient, group_version: str) -> set[str]:
    try:
        data = dyn.request("GET", f"/apis/{group_version}").to_dict()
    except Exception:  # not served (yet)
        return set()
    return {r["name"] for r in data.get("resources", [])}


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
    # The executor's settings (its S3 retry window) as argo/base ships them, plus the local image policy.
    base = yaml.safe_load(config.CONTROLLER_CONFIGMAP.read_text())
    executor = {**yaml.safe_load(base["data"]["executor"]), "imagePullPolicy": "IfNotPresent"}
    data = {
        "executor": yaml.safe_dump(executor),
        # As argo/base configures it: Workflows may only run WorkflowTemplates, with no spec overrides.
        "workflowRestrictions": yaml.safe_dump({"templateReferencing": "Strict"}),
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
    """Argo's CRDs (skipped when the installed set is current), namespace, configuration, RBAC."""
    dyn = dynamic(api, layout)
    crds, digest = argo_crds(layout)
    marker_name = "wml-stack-argo-crds"
    try:
        marker = k8s.CoreV1Api(api).read_namespaced_config_map(marker_name, config.ARGO_NAMESPACE)
        installed = (marker.data or {}).get("digest")
    except k8s.ApiException:
        installed = None
    wanted = {c["spec"]["names"]["plural"] for c in crds}
    if installed != digest or not wanted <= _served_resources(dyn, "argoproj.io/v1alpha1"):
        apply(dyn, crds)
        wait_crds_established(api, [c["metadata"]["name"] for c in crds])
    marker_cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": marker_name, "namespace": config.ARGO_NAMESPACE},
        "data": {"digest": digest},
    }
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": config.ARGO_NAMESPACE}}
    apply(dyn, [namespace, controller_configmap(layout), executor_cluster_role(), marker_cm, *admission_policies()])


def admission_policies() -> list[dict[str, Any]]:
    """The tenant API's admission policy, exactly as operators deploy it from argo/base/admission."""
    path = config.REPO_ROOT / "argo" / "base" / "admission" / "tenant-api.yaml"
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def executor_cluster_role() -> dict[str, Any]:
    """What Argo's executor (init/wait containers of a workflow pod) needs in its namespace."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": EXECUTOR_ROLE},
        "rules": [{"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"], "verbs": ["create", "patch"]}],
    }


def service_account_token(api: k8s.ApiClient, namespace: str, name: str, seconds: int = 3600) -> str:
    """A bound token for a ServiceAccount (TokenRequest API), e.g. as Argo Server bearer token."""
    req = k8s.AuthenticationV1TokenRequest(spec=k8s.V1TokenRequestSpec(audiences=[], expiration_seconds=seconds))
    resp = k8s.CoreV1Api(api).create_namespaced_service_account_token(name, namespace, req)
    if resp.status is None:
        raise RuntimeError(f"no token issued for {namespace}/{name}")
    return str(resp.status.token)


def node_ready(api: k8s.ApiClient, node: str) -> bool:
    try:
        status = k8s.CoreV1Api(api).read_node(node).status
    except k8s.ApiException as exc:
        if exc.status == 404:
            return False
        raise
    conds = (status.conditions if status else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conds)


def wait_node_ready(api: k8s.ApiClient, node: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if node_ready(api, node):
            return
        time.sleep(1)
    raise RuntimeError(f"node {node} not Ready after {timeout:.0f}s")


def delete_all_pods(api: k8s.ApiClient, timeout: float = 30) -> None:
    """Delete every pod and wait until the kubelet has confirmed (containers and sandboxes gone)."""
    core = k8s.CoreV1Api(api)
    core_pods = core.list_pod_for_all_namespaces().items
    for pod in core_pods:
        meta = pod.metadata
        if meta is None or meta.name is None or meta.namespace is None:
            continue
        try:
            core.delete_namespaced_pod(meta.name, meta.namespace, grace_period_seconds=1)
        except k8s.ApiException as exc:
            if exc.status != 404:
                raise
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and core.list_pod_for_all_namespaces().items:
        time.sleep(0.5)
