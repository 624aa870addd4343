"""What issue #26's attacks send, at the sizes they were first tried with: archives, worker scripts for the probe
asset (tests/support/probe.py), and a reader that drops what it reads (so the client holds nothing)."""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
import zlib

import httpx

from tests.support.probe import PROBE

MiB = 1024**2
LOG_BYTES = 300_000_000


def long_line(size: int) -> str:
    """A worker script: one line of ``size`` bytes on stdout, then a while alive (live reads meet it)."""
    return f"""#!/bin/sh
head -c {size} /dev/zero | tr '\\0' 'x'
echo
echo "after the long line"
sleep 20
"""


BIG_LOG = long_line(LOG_BYTES)
# A 2 GiB sparse file in a directory output: a few MB once Argo has tarred and gzipped it.
SPARSE = """#!/bin/sh
mkdir -p /output/tree
echo kept > /output/result
truncate -s 2G /output/tree/sparse
"""
QUIET = b"#!/bin/sh\nsleep 60\n"

# The probe, with room for its log on the node: a container's log counts against its ephemeral storage, so the
# probe itself (64Mi) is stopped by the kubelet long before its log is cut.
ROOMY = PROBE.model_copy(
    update={"name": "roomy", "resources": PROBE.resources.model_copy(update={"ephemeral_storage": "512Mi"})}
)


def zip_bomb(total: int, members: int = 16) -> bytes:
    """A zip of ``members`` files of zeros, ``total`` bytes unpacked (1 GiB: ~1 MiB on the wire)."""
    out = io.BytesIO()
    zeros = b"\0" * (total // members)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for i in range(members):
            archive.writestr(f"zeros-{i}.bin", zeros)
    return out.getvalue()


def tgz_bomb(total: int) -> bytes:
    """A tar.gz of one member of ``total`` zeros (1 GiB: ~1 MiB on the wire), compressed as a stream."""
    header = tarfile.TarInfo("zeros.bin")
    header.size = total
    packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    block = b"\0" * MiB
    parts = [packer.compress(header.tobuf())]
    parts += [packer.compress(block) for _ in range(total // MiB)]
    parts.append(packer.compress(b"\0" * (2 * tarfile.RECORDSIZE)))  # the archive's end
    parts.append(packer.flush())
    return b"".join(parts)


def zip_of(size: int) -> bytes:
    """A stored (uncompressed) zip of ``size`` random bytes: as large on the wire as unpacked."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("noise.bin", os.urandom(size))
    return out.getvalue()


def read_all(url: str, token: str, path: str) -> tuple[int, int, bytes]:
    """(status, bytes read, the last 200 bytes) of a GET, read as a stream and dropped."""
    total, tail = 0, b""
    with httpx.stream("GET", url + path, headers={"Authorization": f"Bearer {token}"}, timeout=300) as response:
        for chunk in response.iter_bytes():
            total += len(chunk)
            tail = (tail + chunk)[-200:]
        return response.status_code, total, tail
