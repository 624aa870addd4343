"""What an uploaded zip input claims to unpack to, read from its central directory before it is accepted.

Argo's executor unpacks zip inputs with Go's ``archive/zip``, which fails a member that decompresses past the size
its header declares: the declared sizes bound what unpacking writes, whatever the compressed bytes hold. So the
sum of the declared sizes, checked against the asset's ``limits.inputSize`` at upload, refuses a zip bomb before
any job starts (a 1 MiB zip of 1 GiB of zeros: 413 at upload). Only the end of the object is read (the central
directory), in ranged reads. A tar.gz has no index: it is bounded by the input volume's size when unpacked (the
kubelet evicts the job: see templates.compiler.pod_patch).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Awaitable, Callable
from typing import Any

from api.backends.s3 import ObjectStore
from api.core.errors import HTTPProblem
from templates import Input, InputKind, WorkflowAsset
from templates.quantity import parse_quantity

MAX_MEMBERS = 100_000  # a central directory is read whole: its size is bounded by its entries
DIRECTORY_MAX = 64 * 1024**2  # and by this many bytes of it


class _Ranged(io.RawIOBase):
    """A seekable, read-only file over one S3 object, in ranged reads (blocking: a worker thread's)."""

    def __init__(self, store: ObjectStore, key: str, size: int) -> None:
        self.store, self.key, self.size, self.pos, self.fetched = store, key, size, 0, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def readinto(self, buffer: Any) -> int:
        end = min(self.size, self.pos + len(buffer))
        if end <= self.pos:
            return 0
        self.fetched += end - self.pos
        if self.fetched > DIRECTORY_MAX:
            raise ValueError("the zip's central directory is larger than this service reads")
        data = self.store.get_bytes(self.key, self.pos, end)
        buffer[: len(data)] = data
        self.pos += len(data)
        return len(data)


def declared_size(store: ObjectStore, key: str, size: int) -> int:
    """The sum of the members' declared uncompressed sizes (ValueError: not a readable zip)."""
    raw = _Ranged(store, key, size)
    try:
        with zipfile.ZipFile(io.BufferedReader(raw, 1024 * 1024)) as archive:
            infos = archive.infolist()
    except zipfile.BadZipFile as exc:
        raise ValueError(f"not a zip archive: {exc}") from None
    if len(infos) > MAX_MEMBERS:
        raise ValueError(f"more than {MAX_MEMBERS} members")
    return sum(info.file_size for info in infos)


async def check_zip(store: ObjectStore, key: str, size: int, cap: int, input_name: str) -> None:
    """Refuse (413) a zip whose members declare more than ``cap`` bytes unpacked, or that is no zip (422)."""
    try:
        total = await store.blocking(declared_size, store, key, size)
    except ValueError as exc:
        raise HTTPProblem(422, "Unprocessable Content", f"input {input_name!r} is a zip input: {exc}") from None
    if total > cap:
        raise HTTPProblem(
            413,
            "Content Too Large",
            f"input {input_name!r} unpacks to {total} bytes, more than the asset's limits.inputSize ({cap} bytes); "
            "nothing was stored",
        )


def upload_check(store: ObjectStore, asset: WorkflowAsset, item: Input) -> Callable[[str, int], Awaitable[None]] | None:
    """What an upload of ``item`` is checked for before it is accepted (None: nothing beyond its size cap)."""
    if item.kind is not InputKind.ARCHIVE or item.format != "zip":
        return None
    cap = int(parse_quantity(asset.limits.input_size))

    async def check(key: str, size: int) -> None:
        await check_zip(store, key, size, cap, item.name)

    return check
