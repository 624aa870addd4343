"""Fixed layout of the local stack: versions, directories, addresses and ports.

Everything the launcher creates lives under one state directory (default
``~/.cache/workflow-middlelayer/stack``); built binaries live next to it in the version-keyed
cache that ``devstack/stack/build.sh`` fills. Nothing listens outside loopback or the stack's own
bridge (``cni0``, 10.88.0.1/16).
"""

from __future__ import annotations

import os
import subprocess
from functools import cached_property
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
STACK_DIR = Path(__file__).resolve().parent
BUILD_SCRIPT = STACK_DIR / "build.sh"
VERSIONS_FILE = REPO_ROOT / "argo" / "versions.env"
CONTROLLER_CONFIGMAP = REPO_ROOT / "argo" / "base" / "argo-config" / "workflow-controller-configmap.yaml"

# Network: one Linux bridge owned by the stack. The host (API server, kubelet, MinIO) is .1,
# the Argo network namespace (workflow-controller, Argo Server) is .2, pods get 10.88.1.1 and up.
BRIDGE = "cni0"
BRIDGE_IP = "10.88.0.1"
POD_CIDR = "10.88.0.0/16"
POD_RANGE_START = "10.88.1.1"
POD_RANGE_END = "10.88.255.254"
SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"
ARGO_NETNS = "wml-argo"
ARGO_NETNS_IP = "10.88.0.2"
ARGO_VETH_HOST = "wml-argo0"

ETCD_CLIENT_PORT = 12379
ETCD_PEER_PORT = 12380
APISERVER_PORT = 6443
CONTROLLER_MANAGER_PORT = 10257
SCHEDULER_PORT = 10259
KUBELET_PORT = 10250
KUBELET_HEALTHZ_PORT = 10248
KUBE_PROXY_HEALTHZ_PORT = 10256
KUBE_ROUTER_HEALTH_PORT = 20244
KUBE_PROXY_METRICS_PORT = 10249
MINIO_PORT = 9000
MINIO_CONSOLE_PORT = 9001
ARGO_SERVER_PORT = 2746
ARGO_CONTROLLER_HEALTH_PORT = 6060
# Cluster add-ons (pods, as on a production cluster): DNS at the conventional ClusterIP, the ingress
# controller on the node's port 80 (hostPort). NetworkPolicies are enforced by kube-router, a host process.
CLUSTER_DOMAIN = "cluster.local"
DNS_SERVICE_IP = "10.96.0.10"
INGRESS_NAMESPACE = "ingress"
INGRESS_PORT = 80
INGRESS_CLASS = "traefik"

NODE_NAME = "wml-node"
ARGO_NAMESPACE = "argo"
BUCKET = "workflows"

PAUSE_IMAGE = "localhost/wml/pause:{kubernetes}"
ARGOEXEC_IMAGE = "localhost/wml/argoexec:{argo}"
DUMMY_JOB_IMAGE = "docker.io/imlahso/dummy-job:latest"

# Host tools the stack needs, with the Debian package that provides each.
HOST_TOOLS: dict[str, str] = {
    "/usr/bin/containerd": "containerd",
    "/usr/bin/ctr": "containerd",
    "/usr/sbin/runc": "runc",
    "/usr/lib/cni/bridge": "containernetworking-plugins",
    "/usr/lib/cni/host-local": "containernetworking-plugins",
    "/usr/lib/cni/loopback": "containernetworking-plugins",
    "/usr/lib/cni/portmap": "containernetworking-plugins",
    "/bin/busybox": "busybox-static",
    "/usr/sbin/iptables": "iptables",
    "/usr/sbin/ipset": "ipset",  # kube-router
    "/usr/sbin/conntrack": "conntrack",
    "/usr/bin/socat": "socat",
    "/usr/bin/openssl": "openssl",
    "/usr/sbin/ip": "iproute2",
    "/usr/bin/mount": "mount",
    "/usr/bin/flock": "util-linux",
    # app_image.py: argo/images/Dockerfile built by podman on a debootstrap base
    "/usr/bin/podman": "podman",
    "/usr/sbin/debootstrap": "debootstrap",
    # build.sh: the pause binary is a static C program
    "/usr/bin/gcc": "gcc",
    "/usr/lib/x86_64-linux-gnu/libc.a": "libc6-dev",
}
CNI_BIN_DIR = Path("/usr/lib/cni")


def cache_dir() -> Path:
    return Path(os.environ.get("WML_CACHE", Path.home() / ".cache" / "workflow-middlelayer"))


def read_versions() -> dict[str, str]:
    versions: dict[str, str] = {}
    for line in VERSIONS_FILE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            versions[key.strip()] = value.strip()
    return versions


class Layout:
    """Paths of one stack instance (state dir) and of the built binaries it runs."""

    def __init__(self, state: Path | None = None) -> None:
        self.state = state or Path(os.environ.get("WML_STACK_DIR", cache_dir() / "stack"))
        self.versions = read_versions()

    # --- versions -------------------------------------------------------------------------
    @property
    def kubernetes_version(self) -> str:
        return self.versions["KUBERNETES_VERSION"]

    @property
    def argo_version(self) -> str:
        return self.versions["ARGO_VERSION"]

    @property
    def pause_image(self) -> str:
        return PAUSE_IMAGE.format(kubernetes=self.kubernetes_version)

    @property
    def argoexec_image(self) -> str:
        return ARGOEXEC_IMAGE.format(argo=self.argo_version)

    # --- built binaries (devstack/stack/build.sh) --------------------------------------------
    def _bin(self, component: str, version_key: str) -> Path:
        return cache_dir() / "bin" / f"{component}-{self.versions[version_key]}"

    @property
    def etcd_bin(self) -> Path:
        return self._bin("etcd", "ETCD_VERSION") / "etcd"

    @property
    def kubernetes_bin(self) -> Path:
        return self._bin("kubernetes", "KUBERNETES_VERSION")

    @property
    def argo_bin(self) -> Path:
        return self._bin("argo", "ARGO_VERSION")

    @property
    def minio_bin(self) -> Path:
        return self._bin("minio", "MINIO_VERSION") / "minio"

    @property
    def pause_bin(self) -> Path:
        return self._bin("pause", "KUBERNETES_VERSION") / "pause"

    @property
    def coredns_bin(self) -> Path:
        return self._bin("coredns", "COREDNS_VERSION") / "coredns"

    @property
    def netpol_bin(self) -> Path:
        return self._bin("netpol", "NETPOL_VERSION") / "kube-router"

    @property
    def kustomize_bin(self) -> Path:
        return self._bin("kustomize", "KUSTOMIZE_VERSION") / "kustomize"

    @property
    def traefik_bin(self) -> Path:
        return self._bin("traefik", "TRAEFIK_VERSION") / "traefik"

    def addon_image(self, name: str, version_key: str) -> str:
        """Name of a cluster add-on's image (its Go binary on busybox), e.g. localhost/wml/coredns:v1.15.0."""
        return f"localhost/wml/{name}:{self.versions[version_key]}"

    def missing_builds(self) -> list[str]:
        dirs = {
            "etcd": self.etcd_bin.parent,
            "kubernetes": self.kubernetes_bin,
            "argo": self.argo_bin,
            "minio": self.minio_bin.parent,
            "pause": self.pause_bin.parent,
            "coredns": self.coredns_bin.parent,
            "netpol": self.netpol_bin.parent,
            "kustomize": self.kustomize_bin.parent,
            "traefik": self.traefik_bin.parent,
        }
        return [name for name, d in dirs.items() if not (d / ".complete").exists()]

    @cached_property
    def argo_src(self) -> Path:
        """Source of the pinned Argo module (CRDs, JSON schema), as build.sh reports it."""
        out = subprocess.run(["bash", str(BUILD_SCRIPT), "paths"], check=True, capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("ARGO_SRC="):
                return Path(line.split("=", 1)[1])
        raise RuntimeError("build.sh paths did not report ARGO_SRC")

    # --- state ---------------------------------------------------------------------------
    @property
    def pki(self) -> Path:
        return self.state / "pki"

    @property
    def run(self) -> Path:
        return self.state / "run"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def config(self) -> Path:
        return self.state / "config"

    @property
    def kubeconfig(self) -> Path:
        return self.state / "kubeconfig"

    def component_kubeconfig(self, name: str) -> Path:
        return self.config / f"{name}.kubeconfig"

    @property
    def etcd_data(self) -> Path:
        return self.state / "etcd"

    @property
    def minio_data(self) -> Path:
        return self.state / "minio"

    @property
    def minio_credentials(self) -> Path:
        return self.state / "minio-credentials.json"

    @property
    def containerd_dir(self) -> Path:
        return self.state / "containerd"

    @property
    def containerd_socket(self) -> Path:
        return self.containerd_dir / "containerd.sock"

    @property
    def kubelet_dir(self) -> Path:
        return self.state / "kubelet"

    @property
    def pod_logs(self) -> Path:
        return self.state / "pod-logs"

    @property
    def cni_conf_dir(self) -> Path:
        return self.state / "cni" / "net.d"

    @property
    def cni_ipam_dir(self) -> Path:
        return self.state / "cni" / "ipam"

    @property
    def image_cache(self) -> Path:
        return cache_dir() / "images"

    @property
    def host_state(self) -> Path:
        """Host settings changed by `up` (sysctls) with their previous values, for `down`."""
        return self.state / "host-state.json"

    @property
    def api_server(self) -> str:
        return f"https://{BRIDGE_IP}:{APISERVER_PORT}"

    @property
    def argo_server_url(self) -> str:
        return f"http://{ARGO_NETNS_IP}:{ARGO_SERVER_PORT}"

    @property
    def s3_endpoint(self) -> str:
        return f"http://{BRIDGE_IP}:{MINIO_PORT}"
