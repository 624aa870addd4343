"""Deploy the provisioner onto the local stack as an operator does: ``kustomize build argo/overlays/local`` (the
real kustomize, built from its Go module like the other parts), applied with server-side apply.

Only what differs per run is set here on the rendered objects: the image imported from this checkout, the EDC
connector's URLs, the asset files and the Secret an operator creates by hand. Argo's own configuration is left
to the stack launcher, which owns it on the local stack.
"""

from __future__ import annotations

import hashlib
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s

from devstack.stack import config, kube
from devstack.stack.config import Layout
from devstack.stack.launcher import StackInfo

ROOT = Path(__file__).resolve().parents[2]
OVERLAY = ROOT / "argo" / "overlays" / "local"
EXAMPLES = ROOT / "templates" / "examples"
NAMESPACE = "workflow-middlelayer"
NAME = "workflow-provisioner"
NODE_PORT = 30880  # the local overlay's NodePort of the provisioner's Service


def render(overlay: Path = OVERLAY) -> list[dict[str, Any]]:
    """``kustomize build`` of an overlay, as objects."""
    out = subprocess.run(
        [str(Layout().kustomize_bin), "build", str(overlay)], check=True, capture_output=True, text=True
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def local_manifests(
    stack: StackInfo,
    image: str,
    edc_url: str,
    edc_api_key: str,
    admin_token: str,
    signaling: dict[str, str] | None = None,
    control_key: str | None = None,
    api_image: str | None = None,
) -> list[dict[str, Any]]:
    """``signaling``: the settings of a provisioner serving data plane signaling (control URL, enabled);
    ``api_image``: the tenant APIs' image (the Dockerfile's ``api`` target), ``image`` when not given."""
    out = []
    for doc in render():
        kind, name = doc["kind"], doc["metadata"]["name"]
        if doc["metadata"].get("namespace") == stack.argo_namespace:
            continue  # Argo's configuration belongs to the stack launcher here
        if kind == "ConfigMap" and name == NAME:
            doc["data"].update(
                {
                    "WML_PROVISIONER_API_IMAGE": api_image or image,
                    "WML_PROVISIONER_EDC_MANAGEMENT_URL": f"{edc_url}/management",
                    **(signaling or {}),
                }
            )
        if kind == "ConfigMap" and name == "workflow-assets":
            doc["data"] = {p.name: p.read_text() for p in sorted(EXAMPLES.glob("*.yaml"))}
        if kind == "Deployment" and name == NAME:
            container = doc["spec"]["template"]["spec"]["containers"][0]
            container["image"] = image
            container["imagePullPolicy"] = "IfNotPresent"
        out.append(doc)
    out.append(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": NAME, "namespace": NAMESPACE},
            "stringData": {
                "WML_PROVISIONER_S3_ADMIN_ACCESS_KEY": stack.s3_access_key,
                "WML_PROVISIONER_S3_ADMIN_SECRET_KEY": stack.s3_secret_key,
                "WML_PROVISIONER_EDC_API_KEY": edc_api_key,
                "WML_PROVISIONER_ADMIN_TOKEN": admin_token,
                "WML_PROVISIONER_EDC_INBOUND_KEY": inbound_key(edc_api_key),
                "WML_PROVISIONER_SIGNALING_INBOUND_KEY": inbound_key(edc_api_key, "signaling"),
                **({"WML_PROVISIONER_SIGNALING_CONTROL_KEY": control_key} if control_key else {}),
            },
        }
    )
    return out


def inbound_key(edc_api_key: str, purpose: str = "inbound") -> str:
    """A key EDC presents to the provisioner (a different secret from the management API's key)."""
    return hashlib.sha256(f"{purpose}\0{edc_api_key}".encode()).hexdigest()


def deploy_provisioner(
    stack: StackInfo,
    image: str,
    edc_url: str,
    edc_api_key: str,
    admin_token: str,
    timeout: float = 180,
    control_url: str | None = None,
    control_key: str | None = None,
    api_image: str | None = None,
) -> str:
    """Apply, wait for the rollout, and return the provisioner's URL from the node (its NodePort).
    With ``control_url`` it serves data plane signaling and registers with that control API."""
    api = kube.api_client(stack.kubeconfig)
    apps = k8s.AppsV1Api(api)
    signaling = (
        {"WML_PROVISIONER_SIGNALING_ENABLED": "true", "WML_PROVISIONER_SIGNALING_CONTROL_URL": control_url}
        if control_url
        else None
    )
    manifests = local_manifests(stack, image, edc_url, edc_api_key, admin_token, signaling, control_key, api_image)
    kube.apply(kube.dynamic(api), manifests)
    # A changed Secret or ConfigMap does not roll pods by itself: restart so the settings apply.
    apps.patch_namespaced_deployment(
        NAME,
        NAMESPACE,
        {"spec": {"template": {"metadata": {"annotations": {"workflow-middlelayer.io/restarted": str(time.time())}}}}},
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if kube.rolled_out(apps.read_namespaced_deployment(NAME, NAMESPACE)):
            return f"http://{config.BRIDGE_IP}:{NODE_PORT}"
        time.sleep(1)
    raise TimeoutError(f"deployment {NAMESPACE}/{NAME} did not become ready in {timeout}s")


def remove_provisioner(stack: StackInfo) -> None:
    api = kube.api_client(stack.kubeconfig)
    try:
        k8s.CoreV1Api(api).delete_namespace(NAMESPACE)
    except k8s.ApiException as exc:
        if exc.status != 404:
            raise
