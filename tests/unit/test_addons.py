"""The local stack's add-on manifests render (every placeholder filled) into the objects the launcher waits for."""

from __future__ import annotations

from devstack.stack import addons, config
from devstack.stack.config import Layout


def test_addon_manifests_render_with_every_workload() -> None:
    docs = addons.manifests(Layout())
    kinds = {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]) for d in docs}
    for namespace, name in addons.WORKLOADS:
        assert ("Deployment", namespace, name) in kinds
    dns = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "kube-dns")
    assert dns["spec"]["clusterIP"] == config.DNS_SERVICE_IP
    assert all("${" not in str(d) for d in docs)
