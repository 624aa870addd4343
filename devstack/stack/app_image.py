"""Our own image (consumer API and provisioner) for the local stack, built without a registry.

Layer 1 is the Debian + Python 3.11 + dependencies root filesystem from `argo/images/build-local.sh`
(rebuilt only when dependencies change); layer 2 holds our three packages (rebuilt when they change).
The image is imported into the stack's containerd under a content-keyed tag, so pods always run the
code of this checkout and never pull.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import tarfile
import tempfile
from pathlib import Path

from . import config
from .config import Layout
from .host import log
from .images import MTIME, ctr, image_config, write_oci_archive

ROOT = config.STACK_DIR.parents[1]
PACKAGES = ("templates", "api", "provisioner")
IMAGE_REPO = "localhost/wml/app"
ENV = [
    "PATH=/opt/wml/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "PYTHONPATH=/opt/wml-src",
    "PYTHONUNBUFFERED=1",
    "PYTHONDONTWRITEBYTECODE=1",
]


def _code_files() -> list[Path]:
    files = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                files.append(path)
    return files


def _normalize(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mtime = MTIME
    return info


def _rootfs_layer(rootfs: Path, out: Path) -> None:
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for child in sorted(rootfs.iterdir()):
            if child.name in {".complete", "proc", "sys", "dev"}:
                continue
            tar.add(child, arcname=child.name, filter=_normalize)
        for name in ("proc", "sys", "dev"):
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, MTIME
            tar.addfile(info)


SCRIPTS = {"workflow-api": "api.cli", "workflow-provisioner": "provisioner.cli", "workflow-templates": "templates.cli"}


def _code_layer(files: list[Path], out: Path) -> None:
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        # The console scripts the Dockerfile's `pip install` would create.
        for script, module in SCRIPTS.items():
            data = f"#!/opt/wml/bin/python\nfrom {module} import app\n\napp()\n".encode()
            info = tarfile.TarInfo(f"opt/wml/bin/{script}")
            info.size, info.mode, info.mtime = len(data), 0o755, MTIME
            tar.addfile(info, io.BytesIO(data))
        for path in files:
            info = tar.gettarinfo(path, arcname=f"opt/wml-src/{path.relative_to(ROOT)}")
            info.mtime, info.uid, info.gid, info.uname, info.gname, info.mode = MTIME, 0, 0, "root", "root", 0o644
            with path.open("rb") as handle:
                tar.addfile(info, handle)


def ensure_app_image(layout: Layout | None = None) -> str:
    """Build (when inputs changed) and import our image; returns its name for pod specs."""
    layout = layout or Layout()
    rootfs = Path(
        subprocess.run(
            [str(ROOT / "argo" / "images" / "build-local.sh")], check=True, capture_output=True, text=True
        ).stdout.strip()
    )
    files = _code_files()
    digest = hashlib.sha256(rootfs.name.encode())
    for path in files:
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    name = f"{IMAGE_REPO}:{digest.hexdigest()[:16]}"
    if name in set(ctr(layout, "images", "ls", "-q").stdout.split()):
        return name
    layout.image_cache.mkdir(parents=True, exist_ok=True)
    base_layer = layout.image_cache / f"app-base-{rootfs.name}.tar"
    if not base_layer.exists():
        log(f"packing the app image's base layer from {rootfs}")
        for stale in layout.image_cache.glob("app-base-*.tar"):
            stale.unlink()
        partial = base_layer.with_suffix(".partial")
        _rootfs_layer(rootfs, partial)
        partial.rename(base_layer)
    with tempfile.TemporaryDirectory() as tmp:
        code_layer = Path(tmp) / "code.tar"
        _code_layer(files, code_layer)
        archive = Path(tmp) / "image.tar"
        cfg = image_config(ENV, "/", None, ["workflow-api", "serve", "--host", "0.0.0.0", "--port", "8080"], "10001")
        write_oci_archive(name, [base_layer, code_layer], cfg, archive)
        log(f"importing image {name} into containerd")
        ctr(layout, "images", "import", str(archive))
    return name
