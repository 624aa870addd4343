"""The add-ons that make the local stack behave like a production cluster, and our image: each is up, and each
does its one job (a pod resolves a Service by name; the image that runs is argo/images/Dockerfile's)."""

from __future__ import annotations

import json
import uuid

import pytest
from kubernetes import client as k8s

from devstack.stack import addons, config, kube
from devstack.stack.app_image import Target, ensure_app_image, podman
from devstack.stack.config import Layout
from devstack.stack.images import ctr
from devstack.stack.launcher import StackInfo, stack_status
from devstack.wait import wait_for

pytestmark = pytest.mark.stack


def test_addons_are_ready_and_listed_with_their_memory(stack: StackInfo) -> None:
    status = stack_status()
    for _, name in addons.WORKLOADS:
        entry = status[f"{name} (pod)"]
        assert entry["healthy"] is True, (name, entry)
        assert float(str(entry["rss_mib"])) > 1, (name, entry)


def test_cluster_dns_answers_for_services(stack: StackInfo) -> None:
    """A plain pod (no host networking, the kubelet's resolv.conf) resolves the ``kubernetes`` Service by name."""
    api = kube.api_client(stack.kubeconfig)
    core = k8s.CoreV1Api(api)
    name = f"dns-{uuid.uuid4().hex[:8]}"
    fqdn = f"kubernetes.default.svc.{config.CLUSTER_DOMAIN}"
    core.create_namespaced_pod(
        "default",
        {
            "metadata": {"name": name},
            "spec": {
                "restartPolicy": "Never",
                "automountServiceAccountToken": False,
                "containers": [
                    {
                        "name": "lookup",
                        "image": config.DUMMY_JOB_IMAGE,
                        "imagePullPolicy": "IfNotPresent",
                        "command": [
                            "/bin/sh",
                            "-c",
                            f"nslookup {fqdn}; nslookup kube-dns.kube-system.svc.{config.CLUSTER_DOMAIN}",
                        ],
                    }
                ],
            },
        },
    )
    try:
        phase = wait_for(
            lambda: core.read_namespaced_pod(name, "default").status.phase in ("Succeeded", "Failed") or None,
            120,
            what="the lookup pod",
        )
        assert phase
        out = core.read_namespaced_pod_log(name, "default")
    finally:
        core.delete_namespaced_pod(name, "default", grace_period_seconds=0)
    assert config.KUBERNETES_SERVICE_IP in out, out
    assert config.DNS_SERVICE_IP in out.split("kube-dns", 1)[-1], out


@pytest.mark.parametrize("target", list(Target))
def test_our_images_are_the_dockerfile_built_by_podman(stack: StackInfo, target: Target) -> None:
    name = ensure_app_image(target)
    assert name in ctr(Layout(), "images", "ls", "-q").stdout.split()
    image = json.loads(podman("image", "inspect", name).stdout)[0]
    # the API image runs the lean server (no consumer CLI imports); the provisioner its CLI
    entrypoint = {Target.API: "workflow-api-server", Target.PROVISIONER: "workflow-provisioner"}[target]
    assert image["Config"]["Entrypoint"] == [f"/opt/wml/bin/{entrypoint}"]
    assert image["Config"]["User"] == "10001:10001"
    # built once per content: asking again changes nothing
    assert ensure_app_image(target) == name
