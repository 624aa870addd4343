"""Host side of the stack: Debian packages, the bridge, the Argo network namespace, sysctls,
firewall rules, and the processes the launcher starts (pid files, logs, stop)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import config
from .config import Layout

FORWARD_CHAIN = "WML-FORWARD"
SYSCTLS = {
    # Pod -> Service -> pod traffic is routed through the host and must see iptables.
    "net/ipv4/ip_forward": "1",
    "net/bridge/bridge-nf-call-iptables": "1",
}


def log(msg: str) -> None:
    print(f"[stack] {msg}", file=sys.stderr, flush=True)


def run(argv: Sequence[str], *, check: bool = True, quiet: bool = False) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    if not quiet and proc.returncode != 0:
        log(f"ignored: {' '.join(argv)}: {proc.stderr.strip()}")
    return proc


# --- packages ------------------------------------------------------------------------------
def ensure_packages() -> None:
    """apt-get install the Debian packages whose tools are missing (update only if needed)."""
    missing = sorted({pkg for path, pkg in config.HOST_TOOLS.items() if not Path(path).exists()})
    if not missing:
        return
    if os.geteuid() != 0:
        raise RuntimeError(f"missing Debian packages {missing}; install them as root")
    log(f"installing Debian packages: {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    # Debian's containerd package starts its own system daemon; the stack runs its own instance.
    if "containerd" in missing and shutil.which("systemctl"):
        subprocess.run(["systemctl", "disable", "--now", "containerd"], capture_output=True)


# --- network -------------------------------------------------------------------------------
def _link_exists(name: str, netns: str | None = None) -> bool:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    return run([*prefix, "ip", "link", "show", name], check=False, quiet=True).returncode == 0


def ensure_network() -> None:
    """Bridge cni0 (10.88.0.1/16), the Argo netns on it (10.88.0.2), sysctls, forward filter."""
    if not _link_exists(config.BRIDGE):
        run(["ip", "link", "add", config.BRIDGE, "type", "bridge"])
    addrs = run(["ip", "-4", "-o", "addr", "show", "dev", config.BRIDGE]).stdout
    if f" {config.BRIDGE_IP}/" not in addrs:
        run(["ip", "addr", "add", f"{config.BRIDGE_IP}/16", "dev", config.BRIDGE])
    run(["ip", "link", "set", config.BRIDGE, "up"])

    netns = config.ARGO_NETNS
    if netns not in run(["ip", "netns", "list"]).stdout.split():
        run(["ip", "netns", "add", netns])
    if not _link_exists(config.ARGO_VETH_HOST):
        run(
            [
                "ip",
                "link",
                "add",
                config.ARGO_VETH_HOST,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                netns,
            ]
        )
    run(["ip", "link", "set", config.ARGO_VETH_HOST, "master", config.BRIDGE, "up"])
    inside = ["ip", "netns", "exec", netns]
    run([*inside, "ip", "link", "set", "lo", "up"])
    if f" {config.ARGO_NETNS_IP}/" not in run([*inside, "ip", "-4", "-o", "addr", "show", "dev", "eth0"]).stdout:
        run([*inside, "ip", "addr", "add", f"{config.ARGO_NETNS_IP}/16", "dev", "eth0"])
    run([*inside, "ip", "link", "set", "eth0", "up"])


# The kubelet sets these itself (its "kernel defaults"); we record them so `down` can put them back.
KUBELET_SYSCTLS = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)


def apply_sysctls(layout: Layout) -> None:
    saved: dict[str, str] = json.loads(layout.host_state.read_text()) if layout.host_state.exists() else {}
    for key in KUBELET_SYSCTLS:
        path = Path("/proc/sys") / key
        if path.exists():
            saved.setdefault(key, path.read_text().strip())
    for key, value in SYSCTLS.items():
        path = Path("/proc/sys") / key
        current = path.read_text().strip()
        saved.setdefault(key, current)
        if current != value:
            path.write_text(value)
    layout.host_state.write_text(json.dumps(saved))


def restore_sysctls(layout: Layout) -> None:
    if not layout.host_state.exists():
        return
    for key, value in json.loads(layout.host_state.read_text()).items():
        try:
            (Path("/proc/sys") / key).write_text(value)
        except OSError as exc:
            log(f"could not restore {key}: {exc}")
    layout.host_state.unlink()


def ensure_forward_filter() -> None:
    """Pods may talk to each other and to the host, but nothing is forwarded off the bridge."""
    if run(["iptables", "-w", "-nL", FORWARD_CHAIN], check=False, quiet=True).returncode != 0:
        run(["iptables", "-w", "-N", FORWARD_CHAIN])
    run(["iptables", "-w", "-F", FORWARD_CHAIN])
    run(["iptables", "-w", "-A", FORWARD_CHAIN, "-i", config.BRIDGE, "-o", config.BRIDGE, "-j", "RETURN"])
    run(["iptables", "-w", "-A", FORWARD_CHAIN, "-i", config.BRIDGE, "-j", "DROP"])
    run(["iptables", "-w", "-A", FORWARD_CHAIN, "-o", config.BRIDGE, "-j", "DROP"])
    if run(["iptables", "-w", "-C", "FORWARD", "-j", FORWARD_CHAIN], check=False, quiet=True).returncode != 0:
        run(["iptables", "-w", "-I", "FORWARD", "1", "-j", FORWARD_CHAIN])


def remove_network() -> None:
    while run(["iptables", "-w", "-D", "FORWARD", "-j", FORWARD_CHAIN], check=False, quiet=True).returncode == 0:
        pass
    run(["iptables", "-w", "-F", FORWARD_CHAIN], check=False, quiet=True)
    run(["iptables", "-w", "-X", FORWARD_CHAIN], check=False, quiet=True)
    run(["ip", "link", "del", config.ARGO_VETH_HOST], check=False, quiet=True)
    run(["ip", "netns", "del", config.ARGO_NETNS], check=False, quiet=True)
    run(["ip", "link", "del", config.BRIDGE], check=False, quiet=True)
    # Chains the kubelet creates (kube-proxy's own rules go with `kube-proxy --cleanup`).
    for tool in ("iptables", "ip6tables"):
        for hook in ("INPUT", "OUTPUT"):
            while run([tool, "-w", "-D", hook, "-j", "KUBE-FIREWALL"], check=False, quiet=True).returncode == 0:
                pass
        run([tool, "-w", "-F", "KUBE-FIREWALL"], check=False, quiet=True)
        run([tool, "-w", "-X", "KUBE-FIREWALL"], check=False, quiet=True)
        for table, chain in (
            ("mangle", "KUBE-KUBELET-CANARY"),
            ("nat", "KUBE-KUBELET-CANARY"),
            ("filter", "KUBE-KUBELET-CANARY"),
            ("mangle", "KUBE-IPTABLES-HINT"),
        ):
            run([tool, "-w", "-t", table, "-X", chain], check=False, quiet=True)


def remove_pod_netns() -> None:
    """Network namespaces containerd's CRI created for pod sandboxes (`cni-<uuid>`)."""
    for name in run(["ip", "netns", "list"], check=False, quiet=True).stdout.split():
        if name.startswith("cni-"):
            run(["ip", "netns", "del", name], check=False, quiet=True)


def unmount_under(root: Path) -> None:
    """Lazily unmount everything mounted below `root` (kubelet volumes, overlay rootfs, shm)."""
    prefix = str(root.resolve()) + "/"
    mounts: list[str] = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point.startswith(prefix):
                mounts.append(point)
    for point in sorted(set(mounts), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


# --- processes -----------------------------------------------------------------------------
@dataclass
class Process:
    """A long-running host process started by the launcher, tracked by a pid file."""

    name: str
    argv: list[str]
    env: Mapping[str, str] = field(default_factory=dict)
    netns: str | None = None
    health: Callable[[], bool] | None = None
    timeout: float = 90.0
    stop_grace: float = 15.0
    config_files: tuple[Path, ...] = ()

    def fingerprint(self) -> str:
        """Changes when the command line, environment or a configuration file changes."""
        h = hashlib.sha256(json.dumps([self.argv, sorted(self.env.items()), self.netns]).encode())
        for path in self.config_files:
            h.update(path.read_bytes() if path.exists() else b"-")
        return h.hexdigest()[:16]

    def running_fingerprint(self, layout: Layout) -> str | None:
        try:
            parts = self.pidfile(layout).read_text().split()
        except OSError:
            return None
        return parts[1] if len(parts) > 1 else None

    def pidfile(self, layout: Layout) -> Path:
        return layout.run / f"{self.name}.pid"

    def logfile(self, layout: Layout) -> Path:
        return layout.logs / f"{self.name}.log"

    def pid(self, layout: Layout) -> int | None:
        """Pid of our running instance, if the pid file points at a live process of this binary."""
        try:
            pid = int(self.pidfile(layout).read_text().split()[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            stat = Path(f"/proc/{pid}/stat").read_text()
        except (OSError, ValueError, IndexError):
            return None
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return None
        # Same program (a version bump changes the path; the fingerprint then forces a restart).
        return pid if cmdline and Path(cmdline[0].decode()).name == Path(self.argv[0]).name else None

    def healthy(self) -> bool:
        try:
            return self.health() if self.health else True
        except Exception:  # any failure of a probe means "not healthy (yet)"
            return False

    def start(self, layout: Layout) -> None:
        layout.run.mkdir(parents=True, exist_ok=True)
        layout.logs.mkdir(parents=True, exist_ok=True)
        argv = (["ip", "netns", "exec", self.netns] if self.netns else []) + self.argv
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "HOME": str(Path.home()),
            **self.env,
        }
        with open(self.logfile(layout), "ab") as out:
            out.write(f"\n===== {time.strftime('%Y-%m-%dT%H:%M:%S')} starting {self.name}\n".encode())
            out.flush()
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=layout.state,
                start_new_session=True,
            )
        self.pidfile(layout).write_text(f"{proc.pid} {self.fingerprint()}\n")
        # Wait until the child has exec'd the component (its cmdline is what pid() checks).
        deadline = time.monotonic() + 5
        while self.pid(layout) is None and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)

    def wait_healthy(self, layout: Layout) -> None:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.pid(layout) is None:
                raise RuntimeError(f"{self.name} exited; see {self.logfile(layout)}:\n{tail(self.logfile(layout))}")
            if self.healthy():
                return
            time.sleep(0.5)
        raise RuntimeError(
            f"{self.name} not healthy after {self.timeout:.0f}s; see {self.logfile(layout)}:\n"
            f"{tail(self.logfile(layout))}"
        )

    def stop(self, layout: Layout) -> bool:
        pid = self.pid(layout)
        self.pidfile(layout).unlink(missing_ok=True)
        if pid is None:
            return False
        terminate(pid, self.stop_grace)
        return True


def terminate(pid: int, grace: float) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    """True while the process exists and is not a zombie (pid 1 here may reap late)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def rss_mib(pid: int) -> float:
    """Resident memory of a process and its descendants, in MiB."""
    total = 0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            todo.extend(int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split())
        except OSError:
            continue
    return total / 1024


KUBE_ROUTER_PREFIXES = ("KUBE-ROUTER-", "KUBE-NWPLCY-", "KUBE-POD-FW-", "KUBE-SRC-", "KUBE-DST-")


def remove_kube_router_rules() -> None:
    """Delete kube-router's iptables chains (and the jumps to them) and its ipsets."""
    saved = run(["iptables-save", "-t", "filter"], check=False, quiet=True).stdout
    chains = [line[1:].split()[0] for line in saved.splitlines() if line.startswith(":")]
    ours = [c for c in chains if c.startswith(KUBE_ROUTER_PREFIXES)]
    for chain in ("INPUT", "FORWARD", "OUTPUT"):
        for line in saved.splitlines():
            if line.startswith(f"-A {chain} ") and any(f"-j {c}" in line for c in ours):
                run(["iptables", "-w", *line.replace("-A", "-D", 1).split()], check=False, quiet=True)
    for chain in ours:
        run(["iptables", "-w", "-F", chain], check=False, quiet=True)
    for chain in ours:
        run(["iptables", "-w", "-X", chain], check=False, quiet=True)
    sets = run(["ipset", "list", "-n"], check=False, quiet=True).stdout.split()
    for name in sets:
        if name.startswith(("KUBE-", "kube-router", "inet6:KUBE-")):
            run(["ipset", "destroy", name], check=False, quiet=True)
