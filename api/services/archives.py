"""What an uploaded archive input unpacks to, checked before it is accepted.

Argo's executor unpacks zip inputs with Go's ``archive/zip``, which fails a member that decompresses past the size
its header declares: the declared sizes bound what unpacking writes, whatever the compressed bytes hold. So the
sum of the declared sizes, checked against the asset's ``limits.inputSize`` at upload, refuses a zip bomb before
any job starts (a 1 MiB zip of 1 GiB of zeros: 413 at upload). Only the end of the object is read (the central
directory), in ranged reads.

A tar.gz has no index and its gzip trailer holds the size modulo 4 GiB (and may lie): it is decompressed once at
upload, as a stream, and refused as soon as it passes ``limits.inputSize`` (so checking it costs at most that much
decompression, in a worker thread). What unpacking writes is bounded again by the input volume's size (the kubelet
stops the job: see templates.compiler.pod_patch).
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

from api.backends.s3 import ObjectStore
from api.core.errors import HTTPProblem, over_limit
from templates import Input, InputKind, WorkflowAsset
from templates.quantity import parse_quantity

MAX_MEMBERS = 50_000  # Python's zipfile builds every entry of a central directory: its count is checked first
DIRECTORY_MAX = 16 * 1024**2  # and its size
EOCD, EOCD64_LOCATOR = b"PK\x05\x06", b"PK\x06\x07"
TAIL = 22 + 65535  # the end record and the longest comment it may carry


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


def directory_shape(store: ObjectStore, key: str, size: int) -> tuple[int, int]:
    """(entries, bytes) of the central directory, from the end records alone (ValueError: no zip end record)."""
    start = max(0, size - TAIL)
    tail = store.get_bytes(key, start, size)
    at = tail.rfind(EOCD)
    if at < 0 or len(tail) - at < 22:
        raise ValueError("not a zip archive: no end of central directory")
    entries, directory = struct.unpack("<HI", tail[at + 10 : at + 16])
    if entries == 0xFFFF or directory == 0xFFFFFFFF:  # zip64: the counts are in the zip64 end record
        position = start + at - 20  # the zip64 locator sits just before the end record
        if position < 0:
            raise ValueError("not a zip archive: a zip64 end record without its locator")
        found = tail[at - 20 : at] if at >= 20 else store.get_bytes(key, position, position + 20)
        if found[:4] != EOCD64_LOCATOR:
            raise ValueError("not a zip archive: a zip64 end record without its locator")
        (record,) = struct.unpack("<Q", found[8:16])
        zip64 = store.get_bytes(key, record, record + 56)
        if zip64[:4] != b"PK\x06\x06" or len(zip64) < 56:
            raise ValueError("not a zip archive: a broken zip64 end record")
        entries, directory = struct.unpack("<QQ", zip64[32:48])
    return entries, directory


def declared_size(store: ObjectStore, key: str, size: int) -> int:
    """The sum of the members' declared uncompressed sizes (ValueError: not a readable zip, or a central directory
    larger than this service reads)."""
    entries, directory = directory_shape(store, key, size)
    if entries > MAX_MEMBERS:
        raise ValueError(f"{entries} members, more than {MAX_MEMBERS}")
    if directory > DIRECTORY_MAX:
        raise ValueError(f"a central directory of {directory} bytes, more than {DIRECTORY_MAX}")
    raw = _Ranged(store, key, size)
    try:
        with zipfile.ZipFile(io.BufferedReader(raw, 1024 * 1024)) as archive:
            infos = archive.infolist()
    except zipfile.BadZipFile as exc:
        raise ValueError(f"not a zip archive: {exc}") from None
    if len(infos) > MAX_MEMBERS:  # the end record lied about its count
        raise ValueError(f"more than {MAX_MEMBERS} members")
    return sum(info.file_size for info in infos)


def _said(measure: Callable[..., int], *args: Any) -> int | str:
    """A measure's figure, or what was wrong with the archive (the worker thread's faults stay S3's)."""
    try:
        return measure(*args)
    except ValueError as exc:
        return str(exc)


CHUNK = 1024**2


def gunzipped_size(store: ObjectStore, key: str, cap: int) -> int:
    """Blocking: the decompressed size of a gzip object (all members), or ``cap + 1`` as soon as it passes ``cap``.
    ValueError when it is no gzip."""
    total = 0
    with store.reader(key) as source:
        inflater = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
        pending = b""
        while True:
            data = pending or source.read(CHUNK)
            pending = b""
            if not data:
                break
            if inflater.eof:  # a further gzip member (gzip and tar allow several)
                inflater = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
            try:
                # bounded output per call: a bomb's chunk never becomes gigabytes in memory
                total += len(inflater.decompress(data, CHUNK))
                while inflater.unconsumed_tail and total <= cap:
                    total += len(inflater.decompress(inflater.unconsumed_tail, CHUNK))
            except zlib.error as exc:
                raise ValueError(f"not a gzip stream ({exc})") from None
            if total > cap:
                return cap + 1
            if inflater.eof:
                pending = inflater.unused_data
        if not inflater.eof:
            raise ValueError("the gzip stream ends early")
    return total


async def check_archive(store: ObjectStore, key: str, size: int, cap: int, item: Input) -> None:
    """Refuse (413) an archive that unpacks to more than ``cap`` bytes, or that is none (422)."""
    if item.format == "zip":
        total = await store.blocking(_said, declared_size, store, key, size)
    else:
        total = await store.heavy(_said, gunzipped_size, store, key, cap)
    if isinstance(total, str):
        raise HTTPProblem(422, "Unprocessable Content", f"input {item.name!r} is a {item.format} input: {total}")
    if total > cap:
        # a zip's members declare their sizes; a tar.gz was decompressed only until it passed the cap
        unpacked = f"{total} bytes, more than" if item.format == "zip" else "more than"
        detail = (
            f"input {item.name!r} unpacks to {unpacked} the asset's limits.inputSize ({cap} bytes); nothing was stored"
        )
        raise over_limit(413, detail, "limits.inputSize", cap)


def upload_check(store: ObjectStore, asset: WorkflowAsset, item: Input) -> Callable[[str, int], Awaitable[None]] | None:
    """What an upload of ``item`` is checked for before it is accepted (None: nothing beyond its size cap)."""
    if item.kind is not InputKind.ARCHIVE:
        return None
    cap = int(parse_quantity(asset.limits.input_size))

    async def check(key: str, size: int) -> None:
        await check_archive(store, key, size, cap, item)

    return check
