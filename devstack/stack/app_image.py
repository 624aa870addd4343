"""Our images (consumer API, provisioner) for the local stack: ``argo/images/Dockerfile`` itself, built by podman.

No registry is reachable here, so the Dockerfile's ``BASE`` is a Debian bookworm root filesystem (Python 3.11,
python3-venv) made by debootstrap and imported into podman; everything else is the Dockerfile as an operator
builds it. podman's storage lives in the version-keyed cache (``~/.cache/workflow-middlelayer/podman``), so its
layer cache survives between runs: a code change rebuilds only the last layers.

The result is saved as a docker archive and imported into the stack's containerd under a content-keyed tag, so
pods always run the code of this checkout and never pull.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path

from . import config
from .config import Layout, cache_dir
from .host import log
from .images import ctr

ROOT = config.REPO_ROOT
DOCKERFILE = ROOT / "argo" / "images" / "Dockerfile"
# What the Dockerfile copies (its build context, minus everything else).
CONTEXT_FILES = ("pyproject.toml", "README.md", "requirements.lock")
PACKAGES = ("templates", "api", "provisioner")
DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
DEBIAN_PACKAGES = ("python3", "python3-venv", "ca-certificates", "passwd")
# Containers here may lower rlimits, not raise them; podman's own defaults would raise them.
ULIMITS = ("--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096")
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")


class Target(StrEnum):
    """The Dockerfile's runtime targets."""

    API = "api"
    PROVISIONER = "provisioner"


def podman_root() -> Path:
    return cache_dir() / "podman"


def podman(*args: str, capture: bool = True) -> subprocess.CompletedProcess[str]:
    root = podman_root()
    argv = [
        "podman",
        "--root",
        str(root / "storage"),
        "--runroot",
        str(root / "run"),
        "--runtime",
        "/usr/sbin/runc",  # crun fails on this kernel's cgroup hybrid mode
        "--cgroup-manager",
        "cgroupfs",
        *args,
    ]
    proc = subprocess.run(argv, capture_output=capture, text=True)
    if proc.returncode != 0:
        detail = (proc.stderr or "").strip()[-2000:] if capture else ""
        raise RuntimeError(f"podman {args[0]} failed ({proc.returncode}): {detail}")
    return proc


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """One image build at a time (the test suite and ``make run`` may both ask)."""
    podman_root().mkdir(parents=True, exist_ok=True)
    with (podman_root() / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _images() -> set[str]:
    return set(podman("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split())


def base_image() -> str:
    """The Dockerfile's BASE: debootstrap's Debian with Python, imported into podman (built once per key)."""
    key = hashlib.sha256(f"{DEBIAN_SUITE} {' '.join(DEBIAN_PACKAGES)}".encode()).hexdigest()[:12]
    name = f"localhost/wml/debian-{DEBIAN_SUITE}-python3:{key}"
    if name in _images():
        return name
    rootfs = cache_dir() / "images" / f"debian-{DEBIAN_SUITE}-python3-{key}"
    if not (rootfs / ".complete").exists():
        log(f"debootstrap of Debian {DEBIAN_SUITE} with Python for the image base — first run only (~3 min)")
        shutil.rmtree(rootfs, ignore_errors=True)
        rootfs.mkdir(parents=True)
        subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(DEBIAN_PACKAGES)}",
                DEBIAN_SUITE,
                str(rootfs),
                DEBIAN_MIRROR,
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        for cached in (rootfs / "var" / "cache" / "apt" / "archives").glob("*.deb"):
            cached.unlink()
        (rootfs / ".complete").touch()
    log(f"importing the image base {name}")
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "--exclude=./.complete", "-c", "."], stdout=subprocess.PIPE)
    try:
        root = podman_root()
        subprocess.run(
            [
                "podman",
                "--root",
                str(root / "storage"),
                "--runroot",
                str(root / "run"),
                "import",
                "-",
                name,
            ],
            stdin=tar.stdout,
            check=True,
            capture_output=True,
        )
    finally:
        tar.wait()
    return name


def _digest(base: str, target: Target) -> str:
    """The image's tag: everything the Dockerfile reads, so an unchanged checkout is never rebuilt."""
    digest = hashlib.sha256(f"{base}\0{target}\0".encode())
    files = [DOCKERFILE, *(ROOT / f for f in CONTEXT_FILES)]
    for package in PACKAGES:
        files.extend(
            p
            for p in sorted((ROOT / package).rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
        )
    for path in files:
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def build(target: Target = Target.API) -> str:
    """``podman build`` of the Dockerfile's target (layer-cached); returns the podman image name."""
    base = base_image()
    name = f"localhost/wml/{target}:{_digest(base, target)}"
    if name in _images():
        return name
    log(f"building {name} from argo/images/Dockerfile with podman")
    with tempfile.TemporaryDirectory() as tmp:
        # Only what the Dockerfile copies goes into the context (no .venv, caches or .git).
        context = Path(tmp)
        for f in CONTEXT_FILES:
            shutil.copy2(ROOT / f, context / f)
        for package in PACKAGES:
            shutil.copytree(ROOT / package, context / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        # The host's CA bundle, for pip only: registries may sit behind a TLS-inspecting proxy (a build secret
        # leaves no trace in the image).
        ca = Path(os.environ.get("PIP_CERT") or HOST_CA)
        secret = ["--secret", f"id=pip-ca,src={ca}"] if ca.is_file() else []
        podman(
            "build",
            "--network=host",  # pip reaches the package registry the host reaches
            *ULIMITS,
            *secret,
            "--build-arg",
            f"BASE={base}",
            "--target",
            str(target),
            "-f",
            str(DOCKERFILE),
            "-t",
            name,
            str(context),
        )
    return name


def ensure_app_image(target: Target = Target.API, layout: Layout | None = None) -> str:
    """Build (when its inputs changed) and import into the stack's containerd; returns its name for pod specs."""
    layout = layout or Layout()
    with _locked():
        name = build(target)
        if name in set(ctr(layout, "images", "ls", "-q").stdout.split()):
            return name
        with tempfile.TemporaryDirectory() as tmp:
            archive = Path(tmp) / "image.tar"
            podman("save", "--format", "docker-archive", "-o", str(archive), name)
            log(f"importing image {name} into containerd")
            ctr(layout, "images", "import", str(archive))
        _prune(target, keep=name)
    return name


def _prune(target: Target, keep: str) -> None:
    """Drop older builds of this target from podman (its layer cache stays with the newest)."""
    prefix = f"localhost/wml/{target}:"
    stale = [n for n in _images() if n.startswith(prefix) and n != keep]
    if stale:
        podman("rmi", *stale)
