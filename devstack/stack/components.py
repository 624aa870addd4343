"""The stack's processes: their configuration files, command lines and health probes."""

from __future__ import annotations

import json
import secrets
import ssl
import subprocess
import urllib.request
from pathlib import Path

import yaml

from . import config
from .config import Layout
from .host import Process


# --- probes --------------------------------------------------------------------------------
def _http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    with urllib.request.urlopen(url, timeout=3, context=context) as resp:  # local URLs only
        return bool(200 <= resp.status < 300)


def _insecure() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _admin_tls(layout: Layout) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(layout.pki / "ca.crt"))
    ctx.load_cert_chain(str(layout.pki / "admin.crt"), str(layout.pki / "admin.key"))
    return ctx


def _containerd_ok(layout: Layout) -> bool:
    proc = subprocess.run(
        ["ctr", "--address", str(layout.containerd_socket), "--timeout", "3s", "version"], capture_output=True
    )
    return proc.returncode == 0


# --- MinIO credentials ---------------------------------------------------------------------
def minio_credentials(layout: Layout) -> tuple[str, str]:
    """Root credentials, generated once and kept (mode 0600) in the state directory."""
    path = layout.minio_credentials
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(json.dumps({"access_key": "wml-admin", "secret_key": secrets.token_urlsafe(24)}))
    data = json.loads(path.read_text())
    return data["access_key"], data["secret_key"]


# --- configuration files -------------------------------------------------------------------
def _write(path: Path, text: str) -> Path:
    """Write only when the content changes: kube-proxy exits when its config file is touched."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def write_containerd_config(layout: Layout) -> Path:
    d = layout.containerd_dir
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    text = f"""# Written by devstack/stack; containerd for the local stack only (own root, state and socket).
version = 2
root = "{d / "root"}"
state = "{d / "state"}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "{layout.containerd_socket}"

[ttrpc]
  address = "{layout.containerd_socket}.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{d / "opt"}"

[{cri}]
  sandbox_image = "{layout.pause_image}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  # No CAP_SYS_RESOURCE on these hosts: oom_score_adj (like rlimits) may only be raised, never
  # lowered below containerd's own value, or runc fails ("failed to update /proc/self/oom_score_adj").
  restrict_oom_score_adj = true
  max_container_log_line_size = 16384

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false
  BinaryName = "/usr/sbin/runc"
  Root = "{d / "runc"}"

[{cri}.cni]
  bin_dir = "{config.CNI_BIN_DIR}"
  conf_dir = "{layout.cni_conf_dir}"
  max_conf_num = 1
"""
    return _write(layout.config / "containerd.toml", text)


def write_cni_config(layout: Layout) -> None:
    layout.cni_conf_dir.mkdir(parents=True, exist_ok=True)
    conflist = {
        "cniVersion": "1.0.0",
        "name": "wml",
        "plugins": [
            {
                "type": "bridge",
                "bridge": config.BRIDGE,
                "isGateway": True,  # the bridge already holds the gateway address; this keeps routes
                "ipMasq": False,  # workers get no way out: nothing is forwarded off the bridge
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(layout.cni_ipam_dir),
                    "ranges": [
                        [
                            {
                                "subnet": config.POD_CIDR,
                                "rangeStart": config.POD_RANGE_START,
                                "rangeEnd": config.POD_RANGE_END,
                                "gateway": config.BRIDGE_IP,
                            }
                        ]
                    ],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    _write(layout.cni_conf_dir / "10-wml.conflist", json.dumps(conflist, indent=2))


def write_kubelet_config(layout: Layout) -> Path:
    pki = layout.pki
    cfg = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": config.BRIDGE_IP,
        "port": config.KUBELET_PORT,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": config.KUBELET_HEALTHZ_PORT,
        "tlsCertFile": str(pki / "kubelet-serving.crt"),
        "tlsPrivateKeyFile": str(pki / "kubelet-serving.key"),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(pki / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "cgroupDriver": "cgroupfs",
        "failSwapOn": False,
        "failCgroupV1": False,  # this host mounts cgroup v1 controllers; 1.34 only warns, say so explicitly
        "containerRuntimeEndpoint": f"unix://{layout.containerd_socket}",
        "podLogsDir": str(layout.pod_logs),
        "resolvConf": "",
        "clusterDNS": [config.DNS_SERVICE_IP],
        "clusterDomain": config.CLUSTER_DOMAIN,
        # Kubernetes' default is 110; one node here carries every tenant (two API pods each) and their jobs.
        "maxPods": 250,
        "serializeImagePulls": False,
        # Images are imported, never pulled: never garbage-collect them, never evict for disk.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "volumePluginDir": str(layout.kubelet_dir / "volume-plugins"),
        "registerNode": True,
        "nodeStatusReportFrequency": "1m",
        "syncFrequency": "10s",
        "fileCheckFrequency": "20s",
        "staticPodPath": "",
        "containerLogMaxSize": "10Mi",
        "containerLogMaxFiles": 2,
        # How often volume usage is measured (default 1m): emptyDir sizeLimits and ephemeral-storage limits are
        # enforced on these figures, so a worker filling its disk is stopped seconds, not a minute, past its bound.
        "volumeStatsAggPeriod": "5s",
    }
    return _write(layout.config / "kubelet.yaml", yaml.safe_dump(cfg, sort_keys=False))


def write_kube_proxy_config(layout: Layout) -> Path:
    cfg = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(layout.component_kubeconfig("kube-proxy"))},
        "mode": "iptables",
        "hostnameOverride": config.NODE_NAME,
        "bindAddress": config.BRIDGE_IP,
        "healthzBindAddress": f"127.0.0.1:{config.KUBE_PROXY_HEALTHZ_PORT}",
        "metricsBindAddress": f"127.0.0.1:{config.KUBE_PROXY_METRICS_PORT}",
        "clusterCIDR": config.POD_CIDR,
        "nodePortAddresses": [f"{config.BRIDGE_IP}/32"],
        "detectLocalMode": "ClusterCIDR",
        # Leave the host's conntrack sysctls as they are.
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
        "iptables": {"localhostNodePorts": False, "syncPeriod": "30s", "minSyncPeriod": "1s"},
    }
    return _write(layout.config / "kube-proxy.yaml", yaml.safe_dump(cfg, sort_keys=False))


# --- processes -----------------------------------------------------------------------------
def etcd(layout: Layout) -> Process:
    client = f"http://127.0.0.1:{config.ETCD_CLIENT_PORT}"
    peer = f"http://127.0.0.1:{config.ETCD_PEER_PORT}"
    return Process(
        "etcd",
        [
            str(layout.etcd_bin),
            "--name",
            "wml",
            "--data-dir",
            str(layout.etcd_data),
            "--listen-client-urls",
            client,
            "--advertise-client-urls",
            client,
            "--listen-peer-urls",
            peer,
            "--initial-advertise-peer-urls",
            peer,
            "--initial-cluster",
            f"wml={peer}",
            "--initial-cluster-state",
            "new",
            "--listen-metrics-urls",
            "http://127.0.0.1:12381",
            # A throw-away development cluster: trade durability for speed on slow disks.
            "--unsafe-no-fsync",
            "--quota-backend-bytes",
            str(2 * 1024**3),
            "--log-level",
            "warn",
        ],
        health=lambda: _http_ok(f"{client}/health"),
    )


def kube_apiserver(layout: Layout) -> Process:
    pki = layout.pki
    return Process(
        "kube-apiserver",
        [
            str(layout.kubernetes_bin / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{config.ETCD_CLIENT_PORT}",
            f"--bind-address={config.BRIDGE_IP}",
            f"--advertise-address={config.BRIDGE_IP}",
            f"--secure-port={config.APISERVER_PORT}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-cluster-ip-range={config.SERVICE_CIDR}",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
            f"--kubelet-certificate-authority={pki / 'ca.crt'}",
            "--kubelet-preferred-address-types=InternalIP",
            "--allow-privileged=true",
            "--profiling=false",
            f"--cert-dir={layout.state / 'apiserver'}",
            "--event-ttl=1h",
        ],
        health=lambda: _http_ok(f"{layout.api_server}/readyz", _admin_tls(layout)),
        timeout=120,
    )


def kube_controller_manager(layout: Layout) -> Process:
    pki, kc = layout.pki, str(layout.component_kubeconfig("controller-manager"))
    return Process(
        "kube-controller-manager",
        [
            str(layout.kubernetes_bin / "kube-controller-manager"),
            f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            "--bind-address=127.0.0.1",
            f"--secure-port={config.CONTROLLER_MANAGER_PORT}",
            f"--cert-dir={layout.state / 'controller-manager'}",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}",
            f"--cluster-signing-key-file={pki / 'ca.key'}",
            "--use-service-account-credentials=true",
            "--leader-elect=false",
            f"--service-cluster-ip-range={config.SERVICE_CIDR}",
            "--profiling=false",
        ],
        health=lambda: _http_ok(f"https://127.0.0.1:{config.CONTROLLER_MANAGER_PORT}/healthz", _insecure()),
    )


def kube_scheduler(layout: Layout) -> Process:
    kc = str(layout.component_kubeconfig("scheduler"))
    return Process(
        "kube-scheduler",
        [
            str(layout.kubernetes_bin / "kube-scheduler"),
            f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            "--bind-address=127.0.0.1",
            f"--secure-port={config.SCHEDULER_PORT}",
            f"--cert-dir={layout.state / 'scheduler'}",
            "--leader-elect=false",
            "--profiling=false",
        ],
        health=lambda: _http_ok(f"https://127.0.0.1:{config.SCHEDULER_PORT}/healthz", _insecure()),
    )


def containerd(layout: Layout) -> Process:
    return Process(
        "containerd",
        ["/usr/bin/containerd", "--config", str(layout.config / "containerd.toml"), "--log-level", "warn"],
        health=lambda: _containerd_ok(layout),
        config_files=(layout.config / "containerd.toml", layout.cni_conf_dir / "10-wml.conflist"),
    )


def kubelet(layout: Layout) -> Process:
    return Process(
        "kubelet",
        [
            str(layout.kubernetes_bin / "kubelet"),
            f"--config={layout.config / 'kubelet.yaml'}",
            f"--kubeconfig={layout.component_kubeconfig('kubelet')}",
            f"--root-dir={layout.kubelet_dir}",
            f"--cert-dir={layout.kubelet_dir / 'pki'}",
            f"--hostname-override={config.NODE_NAME}",
            f"--node-ip={config.BRIDGE_IP}",
            "--v=1",
        ],
        health=lambda: _http_ok(f"http://127.0.0.1:{config.KUBELET_HEALTHZ_PORT}/healthz"),
        config_files=(layout.config / "kubelet.yaml",),
        timeout=120,
    )


def kube_proxy(layout: Layout) -> Process:
    return Process(
        "kube-proxy",
        [str(layout.kubernetes_bin / "kube-proxy"), f"--config={layout.config / 'kube-proxy.yaml'}"],
        health=lambda: _http_ok(f"http://127.0.0.1:{config.KUBE_PROXY_HEALTHZ_PORT}/healthz"),
        config_files=(layout.config / "kube-proxy.yaml",),
    )


def kube_router(layout: Layout) -> Process:
    """NetworkPolicy enforcement: kube-router's policy controller alone (no routing, no service proxy)."""
    return Process(
        "kube-router",
        [
            str(layout.netpol_bin),
            f"--kubeconfig={layout.kubeconfig}",
            "--run-firewall=true",
            "--run-router=false",
            "--run-service-proxy=false",
            f"--hostname-override={config.NODE_NAME}",
            f"--service-cluster-ip-range={config.SERVICE_CIDR}",
            f"--health-port={config.KUBE_ROUTER_HEALTH_PORT}",
            "--metrics-port=0",
        ],
        health=lambda: _http_ok(f"http://127.0.0.1:{config.KUBE_ROUTER_HEALTH_PORT}/healthz"),
    )


def minio(layout: Layout) -> Process:
    user, password = minio_credentials(layout)
    return Process(
        "minio",
        [
            str(layout.minio_bin),
            "server",
            str(layout.minio_data),
            "--quiet",
            "--address",
            f"{config.BRIDGE_IP}:{config.MINIO_PORT}",
            "--console-address",
            f"127.0.0.1:{config.MINIO_CONSOLE_PORT}",
        ],
        env={
            "MINIO_ROOT_USER": user,
            "MINIO_ROOT_PASSWORD": password,
            "MINIO_UPDATE": "off",
            "MINIO_BROWSER_REDIRECT": "off",
            # MinIO ignores lifecycle rules that abort incomplete multipart uploads; this is its own net for them.
            "MINIO_API_STALE_UPLOADS_EXPIRY": "24h",
            "MINIO_API_STALE_UPLOADS_CLEANUP_INTERVAL": "1h",
        },
        health=lambda: _http_ok(f"{layout.s3_endpoint}/minio/health/ready"),
    )


def workflow_controller(layout: Layout) -> Process:
    return Process(
        "workflow-controller",
        [
            str(layout.argo_bin / "workflow-controller"),
            f"--kubeconfig={layout.component_kubeconfig('argo')}",
            f"--namespace={config.ARGO_NAMESPACE}",
            "--configmap=workflow-controller-configmap",
            f"--executor-image={layout.argoexec_image}",
            "--executor-image-pull-policy=IfNotPresent",
        ],
        env={
            "LEADER_ELECTION_DISABLE": "true",
            "KUBECONFIG": str(layout.component_kubeconfig("argo")),
            # No progress ticks: the wait container would read /var/run/argo/progress, a file the worker can
            # replace with a symlink to the wait container's secrets (docs/operator-guide.md).
            "ARGO_PROGRESS_PATCH_TICK_DURATION": "0",
            "ARGO_PROGRESS_FILE_TICK_DURATION": "0",
        },
        netns=config.ARGO_NETNS,
        health=lambda: _http_ok(f"http://{config.ARGO_NETNS_IP}:{config.ARGO_CONTROLLER_HEALTH_PORT}/healthz"),
        stop_grace=5,
    )


def argo_server(layout: Layout) -> Process:
    return Process(
        "argo-server",
        [
            str(layout.argo_bin / "argo"),
            "server",
            f"--kubeconfig={layout.component_kubeconfig('argo')}",
            f"--namespace={config.ARGO_NAMESPACE}",
            "--auth-mode=client",
            "--secure=false",
            f"--port={config.ARGO_SERVER_PORT}",
            "--namespaced=false",
        ],
        # In client auth mode Argo Server builds each request's REST config from the default
        # loading rules (KUBECONFIG), not from --kubeconfig.
        env={"KUBECONFIG": str(layout.component_kubeconfig("argo"))},
        netns=config.ARGO_NETNS,
        health=lambda: _http_ok(f"{layout.argo_server_url}/"),
        stop_grace=3,
    )
