"""Cluster add-ons that make the local stack behave like a production cluster, run as pods as they are there.

- **DNS**: CoreDNS as the ``kube-dns`` Service (``config.DNS_SERVICE_IP``); pods resolve ``*.svc.cluster.local``.
- **Ingress**: Traefik serving ``Ingress`` objects of class ``config.INGRESS_CLASS`` on the node's port
  ``config.INGRESS_PORT``; tenant APIs (and the provisioner) are reached through it.

Each is a static binary built from its Go module (``build.sh``) in a busybox image (``images.py``); the manifests
are the YAML files next to this module, with ``${NAME}`` placeholders filled in here.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from string import Template
from typing import Any

import yaml
from kubernetes import client as k8s

from . import config
from .config import Layout
from .host import log, rss_mib
from .kube import apply, dynamic, rolled_out

MANIFESTS = Path(__file__).resolve().parent / "addons"
# (namespace, name) of the Deployments that must be ready before the stack counts as up.
WORKLOADS = (("kube-system", "coredns"), (config.INGRESS_NAMESPACE, "traefik"))
# workload name -> its process name on the node (/proc/<pid>/comm, at most 15 characters)
PROCESS_NAMES = {"coredns": "coredns", "traefik": "traefik"}


def values(layout: Layout) -> dict[str, str]:
    return {
        "CLUSTER_DOMAIN": config.CLUSTER_DOMAIN,
        "DNS_SERVICE_IP": config.DNS_SERVICE_IP,
        "INGRESS_NAMESPACE": config.INGRESS_NAMESPACE,
        "INGRESS_CLASS": config.INGRESS_CLASS,
        "INGRESS_PORT": str(config.INGRESS_PORT),
        "NODE_IP": config.BRIDGE_IP,
        "COREDNS_IMAGE": layout.addon_image("coredns", "COREDNS_VERSION"),
        "TRAEFIK_IMAGE": layout.addon_image("traefik", "TRAEFIK_VERSION"),
        # A changed Corefile rolls the DNS pod (CoreDNS's reload plugin would too, but only after a minute).
        "COREFILE_DIGEST": hashlib.sha256((MANIFESTS / "coredns.yaml").read_bytes()).hexdigest()[:12],
    }


def manifests(layout: Layout) -> list[dict[str, Any]]:
    """Every add-on object, placeholders filled (a missing value raises KeyError)."""
    subst = values(layout)
    docs: list[dict[str, Any]] = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        text = Template(path.read_text()).substitute(subst)
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def _ready(api: k8s.ApiClient, namespace: str, name: str) -> bool:
    try:
        return rolled_out(k8s.AppsV1Api(api).read_namespaced_deployment(name, namespace))
    except k8s.ApiException as exc:
        if exc.status == 404:
            return False
        raise


def ensure_addons(layout: Layout, api: k8s.ApiClient, timeout: float = 180) -> None:
    """Apply the add-ons (idempotent: server-side apply) and wait until each is ready."""
    apply(dynamic(api, layout), manifests(layout))
    deadline = time.monotonic() + timeout
    pending = list(WORKLOADS)
    while pending:
        pending = [w for w in pending if not _ready(api, *w)]
        if pending and time.monotonic() > deadline:
            names = ", ".join(f"{ns}/{name}" for ns, name in pending)
            raise TimeoutError(f"cluster add-ons not ready after {timeout:.0f}s: {names}")
        if pending:
            time.sleep(1)
    log("cluster add-ons ready: DNS, ingress")


def _pids_named(comm: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == comm:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def status(api: k8s.ApiClient | None) -> dict[str, dict[str, object]]:
    """Per add-on: its process on the node, whether its workload is ready, resident memory (MiB)."""
    out: dict[str, dict[str, object]] = {}
    for namespace, name in WORKLOADS:
        pids = _pids_named(PROCESS_NAMES[name])
        try:
            ready = api is not None and _ready(api, namespace, name)
        except Exception:  # status must answer while the API server is down, too
            ready = False
        out[f"{name} (pod)"] = {
            "pid": pids[0] if pids else None,
            "healthy": ready,
            "rss_mib": round(sum(rss_mib(p) for p in pids), 1),
        }
    return out
