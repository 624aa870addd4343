"""The operator's deployment path, checked with the real tools: both overlays rendered by kustomize (built from its
Go module), the production overlay accepted by the API server (server-side apply, ``dryRun=All``).

The production overlay's first resource is Argo's own remote ``cluster-install`` at the pinned tag; no registry here
serves GitHub, so it is checked for its pin and left out of the render; everything else is rendered and dry-run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s

from devstack.demo import deploy
from devstack.stack import kube
from devstack.stack.config import REPO_ROOT
from devstack.stack.launcher import StackInfo

OVERLAYS = REPO_ROOT / "argo" / "overlays"
ARGO_INSTALL = "https://github.com/argoproj/argo-workflows/manifests/cluster-install?ref="


def versions() -> dict[str, str]:
    lines = (REPO_ROOT / "argo" / "versions.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def build(kustomize: Path, directory: Path) -> list[dict[str, Any]]:
    out = subprocess.run([str(kustomize), "build", str(directory)], check=True, capture_output=True, text=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def by_kind(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def production_without_remote(tmp_path: Path) -> tuple[Path, list[str]]:
    """A copy of the production kustomization without its remote resources (which it returns)."""
    spec = yaml.safe_load((OVERLAYS / "production" / "kustomization.yaml").read_text())
    remote = [r for r in spec["resources"] if "://" in r]
    # kustomize takes bases by relative path only, and files only from in or below the kustomization: copied
    resources = []
    for r in spec["resources"]:
        source = (OVERLAYS / "production" / r).resolve()
        if "://" in r:
            continue
        if source.is_file():
            shutil.copy(source, tmp_path / source.name)
            resources.append(source.name)
        else:
            resources.append(os.path.relpath(source, tmp_path))
    spec["resources"] = resources
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(spec))
    return tmp_path, remote


def test_local_overlay_renders_what_the_local_stack_needs(kustomize: Path) -> None:
    docs = build(kustomize, OVERLAYS / "local")
    objects = by_kind(docs)
    config = objects[("ConfigMap", "workflow-provisioner")]["data"]
    # tenant APIs are handed out as URLs of the stack's ingress controller, routed by the provisioner's Ingresses
    assert config["WML_PROVISIONER_API_URL_TEMPLATE"] == "http://10.88.0.1/tenants/{tenant}/"
    assert config["WML_PROVISIONER_INGRESS_ENABLED"] == "true"
    assert config["WML_PROVISIONER_INGRESS_CLASS"] == "traefik"
    assert "WML_PROVISIONER_INGRESS_HOST" not in config
    service = objects[("Service", "workflow-provisioner")]["spec"]
    assert service["type"] == "NodePort" and service["ports"][0]["nodePort"] == deploy.NODE_PORT
    # the provisioner's own ingress policy comes with it
    policy = objects[("NetworkPolicy", "workflow-provisioner-ingress")]["spec"]
    assert policy["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "edc"}
    # what the demo deploys is this render (it adds only the image, EDC URLs, assets and the Secret)
    assert {(d["kind"], d["metadata"]["name"]) for d in deploy.render()} == set(objects)


def test_production_overlay_pins_argo_to_versions_env(tmp_path: Path) -> None:
    _, remote = production_without_remote(tmp_path)
    assert remote == [ARGO_INSTALL + versions()["ARGO_VERSION"]]


def test_production_overlay_renders(kustomize: Path, tmp_path: Path) -> None:
    directory, _ = production_without_remote(tmp_path)
    objects = by_kind(build(kustomize, directory))
    container = objects[("Deployment", "workflow-provisioner")]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.provider.example/workflow-middlelayer-provisioner:0.1.0"
    assert ("ValidatingAdmissionPolicy", "wml-tenant-api") in objects
    # two provisioner replicas, rolled one at a time, drained one at a time
    deployment = objects[("Deployment", "workflow-provisioner")]["spec"]
    assert deployment["replicas"] == 2 and deployment["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert objects[("PodDisruptionBudget", "workflow-provisioner")]["spec"]["maxUnavailable"] == 1


def _wait_active(core: k8s.CoreV1Api, name: str) -> None:
    """Make sure ``name`` exists and is not terminating (another test may have just removed it)."""
    deadline = time.monotonic() + 120
    while True:
        try:
            ns = core.read_namespace(name)
            if ns.status.phase == "Active":
                return
        except k8s.ApiException as exc:
            if exc.status != 404:
                raise
            core.create_namespace({"metadata": {"name": name}})
            continue
        assert time.monotonic() < deadline, f"namespace {name} still terminating"
        time.sleep(1)


def dry_run_apply(dyn: Any, doc: dict[str, Any]) -> Any:
    """Server-side apply with ``dryRun=All``: validated and admitted, never stored."""
    resource = dyn.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
    return dyn.server_side_apply(
        resource,
        body=doc,
        name=doc["metadata"]["name"],
        namespace=doc["metadata"].get("namespace"),
        field_manager="wml-overlay-test",
        force_conflicts=True,
        dry_run="All",
    )


def test_production_overlay_is_accepted_by_the_api_server(kustomize: Path, stack: StackInfo, tmp_path: Path) -> None:
    directory, _ = production_without_remote(tmp_path)
    docs = build(kustomize, directory)
    api = kube.api_client(stack.kubeconfig)
    core = k8s.CoreV1Api(api)
    # A dry-run Namespace is not stored, so the objects in it need the real one (the demo's namespace).
    for ns in {d["metadata"]["namespace"] for d in docs if "namespace" in d["metadata"]}:
        _wait_active(core, ns)
    dyn = kube.dynamic(api)
    accepted = []
    for doc in docs:
        answer = dry_run_apply(dyn, doc)
        assert answer.metadata.name == doc["metadata"]["name"]
        accepted.append(doc["kind"])
    assert {"Namespace", "Deployment", "Service", "NetworkPolicy", "ValidatingAdmissionPolicy"} <= set(accepted)
    assert "PodDisruptionBudget" in accepted
    # and a broken object is refused by the same path, so the acceptance above means something
    broken = dict(docs[0]) if docs[0]["kind"] != "Namespace" else dict(docs[1])
    broken = {**broken, "spec": {"no-such-field": True}} if "spec" in broken else {**broken, "data": [1]}
    try:
        dry_run_apply(dyn, broken)
    except Exception as exc:  # the dynamic client raises its own ApiException subclasses
        # (the API server answers a typed-apply schema error with 500, naming the field)
        assert "field not declared in schema" in str(getattr(exc, "body", exc)), exc
    else:
        raise AssertionError(f"the API server accepted a broken {broken['kind']}")
