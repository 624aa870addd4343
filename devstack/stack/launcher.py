"""Bring the local stack up, report on it, take it down.

    ensure_stack() -> StackInfo      start what is missing, reuse what is healthy
    stop_stack(only=None, purge=False)
    stack_status() -> dict

The stack: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd, kubelet,
kube-proxy (host processes), MinIO on the bridge, and Argo's workflow-controller and Argo Server
in their own network namespace on the bridge. Must run as root (it creates a bridge, network
namespaces, cgroups and mounts).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from . import addons, certs, components, config, host, images, kube, s3
from .config import Layout
from .host import Process, log


class StackInfo(BaseModel):
    """How to reach the running stack."""

    model_config = ConfigDict(frozen=True)

    state_dir: Path
    kubeconfig: Path
    api_server: str
    node_name: str
    argo_namespace: str
    argo_server_url: str
    s3_endpoint: str = Field(description="URL for clients, e.g. http://10.88.0.1:9000")
    s3_host: str = Field(description="host:port, as Argo's s3.endpoint wants it")
    s3_access_key: str
    s3_secret_key: str = Field(repr=False)
    bucket: str
    minio_console_url: str
    executor_image: str
    worker_image: str
    ingress_url: str = Field(description="the ingress controller on the node, e.g. http://10.88.0.1")
    ingress_namespace: str
    ingress_class: str
    started: tuple[str, ...] = Field(default=(), description="components this call started")


def processes(layout: Layout) -> dict[str, Process]:
    """All stack processes, in start order."""
    procs = [
        components.etcd(layout),
        components.minio(layout),
        components.containerd(layout),
        components.kube_apiserver(layout),
        components.kube_controller_manager(layout),
        components.kube_scheduler(layout),
        components.kubelet(layout),
        components.kube_proxy(layout),
        components.kube_router(layout),
        components.workflow_controller(layout),
        components.argo_server(layout),
    ]
    return {p.name: p for p in procs}


def info(layout: Layout, started: Iterable[str] = ()) -> StackInfo:
    access, secret = components.minio_credentials(layout)
    return StackInfo(
        state_dir=layout.state,
        kubeconfig=layout.kubeconfig,
        api_server=layout.api_server,
        node_name=config.NODE_NAME,
        argo_namespace=config.ARGO_NAMESPACE,
        argo_server_url=layout.argo_server_url,
        s3_endpoint=layout.s3_endpoint,
        s3_host=f"{config.BRIDGE_IP}:{config.MINIO_PORT}",
        s3_access_key=access,
        s3_secret_key=secret,
        bucket=config.BUCKET,
        minio_console_url=f"http://127.0.0.1:{config.MINIO_CONSOLE_PORT}",
        executor_image=layout.argoexec_image,
        worker_image=config.DUMMY_JOB_IMAGE,
        ingress_url=f"http://{config.BRIDGE_IP}" + ("" if config.INGRESS_PORT == 80 else f":{config.INGRESS_PORT}"),
        ingress_namespace=config.INGRESS_NAMESPACE,
        ingress_class=config.INGRESS_CLASS,
        started=tuple(started),
    )


@contextmanager
def _locked(layout: Layout) -> Iterator[None]:
    layout.state.mkdir(parents=True, exist_ok=True)
    layout.state.chmod(0o700)
    with open(layout.state / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def ensure_built(layout: Layout) -> None:
    missing = layout.missing_builds()
    if not missing:
        return
    log(f"building {', '.join(missing)} from their Go modules — first run only, this takes a while")
    cache = config.cache_dir() / "build"
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".launcher.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        subprocess.run(["bash", str(config.BUILD_SCRIPT), *layout.missing_builds()], check=True)


def _prepare(layout: Layout) -> None:
    for d in (layout.run, layout.logs, layout.config, layout.pod_logs, layout.kubelet_dir):
        d.mkdir(parents=True, exist_ok=True)
    host.ensure_packages()
    certs.ensure_pki(layout)
    certs.ensure_kubeconfigs(layout)
    components.minio_credentials(layout)
    components.write_containerd_config(layout)
    components.write_cni_config(layout)
    components.write_kubelet_config(layout)
    components.write_kube_proxy_config(layout)
    host.ensure_network()
    host.apply_sysctls(layout)
    host.ensure_forward_filter()


def _start(layout: Layout, procs: list[Process], started: list[str]) -> None:
    """Start those of `procs` that are not running, then wait until all are healthy."""
    for p in procs:
        running = p.running_fingerprint(layout)
        if p.pid(layout) is not None and running is not None and running != p.fingerprint():
            log(f"restarting {p.name}: its configuration changed")
            p.stop(layout)
        if p.pid(layout) is None:
            log(f"starting {p.name}")
            p.start(layout)
            started.append(p.name)
    for p in procs:
        p.wait_healthy(layout)


def ensure_stack(layout: Layout | None = None) -> StackInfo:
    """Bring the whole stack up (idempotent) and return how to reach it."""
    layout = layout or Layout()
    if os.geteuid() != 0:
        raise RuntimeError("the local stack needs root (bridge, network namespaces, cgroups, mounts)")
    host.ensure_packages()
    ensure_built(layout)
    t0 = time.monotonic()
    started: list[str] = []
    with _locked(layout):
        _prepare(layout)
        procs = processes(layout)
        _start(layout, [procs["etcd"], procs["minio"], procs["containerd"]], started)
        images.ensure_images(layout)
        access, secret = components.minio_credentials(layout)
        s3.ensure_bucket(layout.s3_endpoint, config.BUCKET, access, secret)
        _start(layout, [procs["kube-apiserver"]], started)
        _start(
            layout,
            [procs[n] for n in ("kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy")],
            started,
        )
        api = kube.api_client(layout.kubeconfig)
        kube.install_argo(layout, api)
        kube.wait_node_ready(api, config.NODE_NAME)
        # kube-router exits when its Node object does not exist yet (a fresh machine): after the kubelet registered.
        _start(layout, [procs["kube-router"], procs["workflow-controller"], procs["argo-server"]], started)
        addons.ensure_addons(layout, api)
    log(f"stack up in {time.monotonic() - t0:.1f}s" + (f" (started {', '.join(started)})" if started else ""))
    return info(layout, started)


def _kill_leftover_containers(layout: Layout) -> None:
    """Kill and remove every container still known to our containerd (k8s.io namespace)."""
    if not layout.containerd_socket.exists():
        return
    base = ["ctr", "--address", str(layout.containerd_socket), "--namespace", "k8s.io", "--timeout", "10s"]
    tasks = subprocess.run([*base, "tasks", "ls", "-q"], capture_output=True, text=True).stdout.split()
    for task in tasks:
        subprocess.run([*base, "tasks", "kill", "-s", "SIGKILL", task], capture_output=True)
    time.sleep(0.5 if tasks else 0)
    for task in tasks:
        subprocess.run([*base, "tasks", "rm", "-f", task], capture_output=True)
    for ctr in subprocess.run([*base, "containers", "ls", "-q"], capture_output=True, text=True).stdout.split():
        subprocess.run([*base, "containers", "rm", ctr], capture_output=True)


def _kill_our_shims(layout: Layout) -> None:
    """containerd-shim processes outlive containerd; stop the ones serving our containerd."""
    needle = str(layout.containerd_socket).encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if b"containerd-shim" in cmdline.split(b"\0")[0] and needle in cmdline:
            host.terminate(int(proc.name), grace=5)


def stop_stack(layout: Layout | None = None, *, only: Iterable[str] | None = None, purge: bool = False) -> None:
    """Stop the stack's processes (all, or just `only`) and clean up what they leave on the host.

    A full stop keeps data (etcd, MinIO, images) for the next `ensure_stack`; `purge` removes the
    whole state directory as well (binaries and built images stay cached)."""
    layout = layout or Layout()
    procs = processes(layout)
    names = list(procs) if only is None else [n for n in procs if n in set(only)]
    full = set(names) == set(procs)
    with _locked(layout):
        for name in ("argo-server", "workflow-controller", "kube-controller-manager", "kube-scheduler"):
            if name in names:
                procs[name].stop(layout)
        if full and procs["kubelet"].pid(layout) and procs["kube-apiserver"].pid(layout):
            try:  # let the kubelet tear pods down properly (CNI DEL, unmounts)
                kube.delete_all_pods(kube.api_client(layout.kubeconfig))
            except Exception as exc:  # best effort; leftovers are removed below
                log(f"could not delete pods through the API: {exc}")
        for name in ("kubelet", "kube-proxy", "kube-router"):
            if name in names:
                procs[name].stop(layout)
        if "kube-proxy" in names:
            kp = layout.kubernetes_bin / "kube-proxy"
            if kp.exists():
                subprocess.run([str(kp), "--cleanup"], capture_output=True)
        if "containerd" in names:
            _kill_leftover_containers(layout)
            procs["containerd"].stop(layout)
            _kill_our_shims(layout)
        for name in ("kube-apiserver", "etcd", "minio"):
            if name in names:
                procs[name].stop(layout)
        if full:
            # kube-router's rules outlive it (and its --cleanup-config removes nothing in v2.1.0)
            host.remove_kube_router_rules()
            host.unmount_under(layout.state)
            host.remove_pod_netns()
            host.remove_network()
            host.restore_sysctls(layout)
    if purge:
        host.unmount_under(layout.state)
        shutil.rmtree(layout.state, ignore_errors=True)
    log("stack stopped" + (" and purged" if purge else ""))


def stack_status(layout: Layout | None = None) -> dict[str, dict[str, object]]:
    """Per component: pid, healthy, resident memory (MiB, with children)."""
    layout = layout or Layout()
    out: dict[str, dict[str, object]] = {}
    for name, p in processes(layout).items():
        pid = p.pid(layout)
        out[name] = {
            "pid": pid,
            "healthy": bool(pid) and p.healthy(),
            "rss_mib": round(host.rss_mib(pid), 1) if pid else 0.0,
        }
    api = (
        kube.api_client(layout.kubeconfig) if layout.kubeconfig.exists() and out["kube-apiserver"]["healthy"] else None
    )
    out.update(addons.status(api))
    return out


def is_healthy(layout: Layout | None = None) -> bool:
    return all(c["healthy"] for c in stack_status(layout).values())


def stack_users(layout: Layout) -> list[int]:
    """Pids of other live test sessions registered as using the stack (see fixture.py)."""
    others = []
    users = layout.run / "users"
    for entry in users.glob("*"):
        pid = int(entry.name) if entry.name.isdigit() else -1
        if pid == os.getpid():
            continue
        if pid > 0 and Path(f"/proc/{pid}").exists():
            others.append(pid)
        else:
            entry.unlink(missing_ok=True)  # a session that ended without cleaning up
    return others
