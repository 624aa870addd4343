"""Container images built without a registry: a busybox-static root filesystem plus our files,
written as an OCI image-layout tarball and imported into containerd's `k8s.io` namespace.

Images are keyed by a hash of their inputs; an unchanged image is neither rebuilt nor
re-imported.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from . import config
from .config import Layout
from .host import log

BUILDER_VERSION = "1"  # bump when the image layout written here changes
MTIME = 1_700_000_000
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BUSYBOX = Path("/bin/busybox")
FILES = config.STACK_DIR / "files"


@dataclass(frozen=True)
class Entry:
    """One entry of the root filesystem: a directory, a file (bytes or host path) or a symlink."""

    path: str
    mode: int = 0o755
    data: bytes | None = None
    source: Path | None = None
    link: str | None = None

    def digest_input(self) -> str:
        content = self.data if self.data is not None else b""
        src = hashlib.sha256(self.source.read_bytes()).hexdigest() if self.source else ""
        return f"{self.path}|{self.mode:o}|{hashlib.sha256(content).hexdigest()}|{src}|{self.link}"


@dataclass
class Image:
    name: str
    entries: list[Entry]
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    workdir: str = "/"
    env: list[str] = field(default_factory=lambda: [PATH_ENV])

    def input_hash(self) -> str:
        h = hashlib.sha256(BUILDER_VERSION.encode())
        h.update(json.dumps([self.name, self.entrypoint, self.cmd, self.workdir, self.env]).encode())
        for entry in self.entries:
            h.update(entry.digest_input().encode())
        return h.hexdigest()[:16]


def _dirs_for(paths: list[str]) -> list[Entry]:
    dirs: set[str] = set()
    for p in paths:
        parts = p.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]))
    return [Entry(d, mode=0o1777 if d == "tmp" else 0o755) for d in sorted(dirs)]


def busybox_rootfs() -> list[Entry]:
    """busybox-static with its applets in /bin, /etc basics and a writable /tmp."""
    applets = subprocess.run([str(BUSYBOX), "--list"], check=True, capture_output=True, text=True).stdout.split()
    version = subprocess.run([str(BUSYBOX)], capture_output=True, text=True).stdout.split("\n", 1)[0]
    os_release = (
        'PRETTY_NAME="Workflow Middle-Layer worker (busybox)"\n'
        'NAME="wml-busybox"\n'
        "ID=busybox\n"
        f'VERSION_ID="{version.split()[1] if len(version.split()) > 1 else "unknown"}"\n'
        'HOME_URL="https://busybox.net/"\n'
    )
    entries = [
        Entry("bin/busybox", source=BUSYBOX),
        *(Entry(f"bin/{a}", link="busybox") for a in applets if a != "busybox"),
        Entry(
            "etc/passwd",
            0o644,
            data=b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
        ),
        Entry("etc/group", 0o644, data=b"root:x:0:\nnobody:x:65534:\n"),
        Entry("etc/os-release", 0o644, data=os_release.encode()),
        Entry("tmp", 0o1777),
        Entry("root", 0o700),
        Entry("usr/bin/env", link="../../bin/busybox"),
    ]
    return entries


def stack_images(layout: Layout) -> list[Image]:
    argoexec = layout.argo_bin / "argoexec"
    return [
        Image(layout.pause_image, [Entry("pause", source=layout.pause_bin)], entrypoint=["/pause"]),
        Image(
            layout.argoexec_image,
            [*busybox_rootfs(), Entry("bin/argoexec", source=argoexec)],
            entrypoint=["argoexec"],
        ),
        Image(
            config.DUMMY_JOB_IMAGE,
            [*busybox_rootfs(), Entry("app/entrypoint.sh", source=FILES / "dummy-job-entrypoint.sh")],
            cmd=["/bin/sh", "entrypoint.sh"],
            workdir="/app",
        ),
        # Cluster add-ons (devstack/stack/addons.py): each one static Go binary on busybox.
        Image(
            layout.addon_image("coredns", "COREDNS_VERSION"),
            [*busybox_rootfs(), Entry("bin/coredns", source=layout.coredns_bin)],
            entrypoint=["/bin/coredns"],
        ),
        Image(
            layout.addon_image("traefik", "TRAEFIK_VERSION"),
            [*busybox_rootfs(), Entry("bin/traefik", source=layout.traefik_bin)],
            entrypoint=["/bin/traefik"],
        ),
    ]


def _layer(entries: list[Entry], out: Path) -> None:
    """Write an uncompressed, reproducible layer tar."""
    all_entries = {e.path.strip("/"): e for e in _dirs_for([e.path for e in entries])}
    all_entries.update({e.path.strip("/"): e for e in entries})
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(all_entries):
            e = all_entries[path]
            info = tarfile.TarInfo(path)
            info.mtime, info.uid, info.gid, info.uname, info.gname = MTIME, 0, 0, "root", "root"
            info.mode = e.mode
            if e.link is not None:
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, e.link, 0o777
                tar.addfile(info)
            elif e.data is not None or e.source is not None:
                data = e.data if e.data is not None else e.source.read_bytes()  # type: ignore[union-attr]
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)


def build_oci_archive(image: Image, out: Path) -> None:
    """Write `image` as an OCI image layout (index.json, blobs) in a tar archive at `out`."""
    with tempfile.TemporaryDirectory() as tmp:
        layer_path = Path(tmp) / "layer.tar"
        _layer(image.entries, layer_path)
        write_oci_archive(
            image.name, [layer_path], image_config(image.env, image.workdir, image.entrypoint, image.cmd), out
        )


def image_config(
    env: list[str], workdir: str, entrypoint: list[str] | None, cmd: list[str] | None, user: str | None = None
) -> dict[str, object]:
    config: dict[str, object] = {"Env": env, "WorkingDir": workdir}
    if entrypoint:
        config["Entrypoint"] = entrypoint
    if cmd:
        config["Cmd"] = cmd
    if user:
        config["User"] = user
    return config


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def write_oci_archive(name: str, layers: list[Path], container_config: dict[str, object], out: Path) -> None:
    """Write an OCI image layout with the given uncompressed layer tars (bottom first) to `out`."""
    digests = [_sha256_file(layer) for layer in layers]
    cfg = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "created": "2023-11-14T22:13:20Z",
            "config": container_config,
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{d}" for d in digests]},
            "history": [{"created": "2023-11-14T22:13:20Z", "created_by": "devstack/stack/images.py"} for _ in layers],
        },
        sort_keys=True,
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": "sha256:" + hashlib.sha256(cfg).hexdigest(),
                "size": len(cfg),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": f"sha256:{d}",
                    "size": p.stat().st_size,
                }
                for d, p in zip(digests, layers, strict=True)
            ],
        },
        sort_keys=True,
    ).encode()
    index = json.dumps(
        {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": "sha256:" + hashlib.sha256(manifest).hexdigest(),
                    "size": len(manifest),
                    "platform": {"architecture": "amd64", "os": "linux"},
                    "annotations": {
                        "io.containerd.image.name": name,
                        "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1],
                    },
                }
            ],
        },
        sort_keys=True,
    ).encode()

    def add_bytes(tar: tarfile.TarFile, member: str, data: bytes) -> None:
        info = tarfile.TarInfo(member)
        info.size, info.mtime, info.mode = len(data), MTIME, 0o644
        tar.addfile(info, io.BytesIO(data))

    tmp_out = out.with_suffix(".partial")
    with tarfile.open(tmp_out, "w") as tar:
        add_bytes(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add_bytes(tar, "index.json", index)
        for blob in (cfg, manifest):
            add_bytes(tar, f"blobs/sha256/{hashlib.sha256(blob).hexdigest()}", blob)
        for digest, layer in zip(digests, layers, strict=True):
            if f"blobs/sha256/{digest}" not in tar.getnames():
                tar.add(layer, arcname=f"blobs/sha256/{digest}")
    tmp_out.rename(out)


def ctr(layout: Layout, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ctr", "--address", str(layout.containerd_socket), "--namespace", "k8s.io", *args],
        check=True,
        capture_output=True,
        text=True,
    )


def ensure_images(layout: Layout) -> None:
    """Build (if inputs changed) and import (if containerd lacks it) every stack image."""
    layout.image_cache.mkdir(parents=True, exist_ok=True)
    state_file = layout.state / "images.json"
    imported: dict[str, str] = json.loads(state_file.read_text()) if state_file.exists() else {}
    present = set(ctr(layout, "images", "ls", "-q").stdout.split())
    for image in stack_images(layout):
        key = image.input_hash()
        if imported.get(image.name) == key and image.name in present:
            continue
        archive = layout.image_cache / f"{image.name.replace('/', '_').replace(':', '_')}-{key}.tar"
        if not archive.exists():
            log(f"building image {image.name}")
            for stale in layout.image_cache.glob(archive.name.rsplit("-", 1)[0] + "-*.tar"):
                stale.unlink()
            build_oci_archive(image, archive)
        log(f"importing image {image.name} into containerd")
        ctr(layout, "images", "import", str(archive))
        imported[image.name] = key
        state_file.write_text(json.dumps(imported, indent=1))


def import_archive(archive: Path, layout: Layout | None = None) -> None:
    """Import an image archive (OCI layout or `docker save` tar) into the stack's containerd, e.g. an
    image of our own API built elsewhere. Pods must then use imagePullPolicy IfNotPresent/Never."""
    ctr(layout or Layout(), "images", "import", str(archive))
