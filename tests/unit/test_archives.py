"""A zip input is judged by its central directory before it is accepted (issue #26): what its members declare
unpacked, read from the end of the object in ranged reads, never by unpacking it."""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import tarfile
import zipfile
from collections.abc import Iterator

import pytest

from api.services.archives import declared_size, gunzipped_size


class Bytes:
    """The one thing the check asks of the object store: ranged reads of one object."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.read = 0

    def get_bytes(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        piece = self.data[start:end]
        self.read += len(piece)
        return piece


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def test_a_bomb_declares_what_it_unpacks_to_and_only_its_end_is_read() -> None:
    bomb = _zip({f"zeros-{i}": b"\0" * (8 * 1024 * 1024) for i in range(16)})  # 128 MiB of zeros
    assert len(bomb) < 1024 * 1024
    store = Bytes(bomb)
    assert declared_size(store, "k", len(bomb)) == 16 * 8 * 1024 * 1024  # type: ignore[arg-type]
    assert store.read <= 22 + 65535 + 4096  # the end records and the central directory, not the members


def test_what_is_no_zip_is_said_so() -> None:
    for data in (b"", b"not a zip at all" * 100, _zip({"a": b"x"})[:-30]):
        with pytest.raises(ValueError, match="not a zip"):
            declared_size(Bytes(data), "k", len(data))  # type: ignore[arg-type]


def test_a_directory_of_too_many_members_is_refused_from_its_end_record() -> None:
    """70 000 members: more than a classic end record counts, so the zip64 one is read (both paths)."""
    for count in (60_000, 70_000):
        many = _zip({f"m{i}": b"" for i in range(count)})
        store = Bytes(many)
        with pytest.raises(ValueError, match=f"{count} members"):
            declared_size(store, "k", len(many))  # type: ignore[arg-type]
        assert store.read <= 2 * (22 + 65535) + 56  # the end records only, never the directory


class Stream:
    """The one thing the tar.gz check asks of the object store: one object, read as a stream."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    @contextlib.contextmanager
    def reader(self, key: str) -> Iterator[io.BytesIO]:
        yield io.BytesIO(self.data)


def _tgz(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_a_tgz_is_measured_by_decompressing_it_and_stops_past_the_cap() -> None:
    small = _tgz({"a.txt": b"hello"})
    assert 10240 <= gunzipped_size(Stream(small), "k", 1 << 20) <= 20480  # type: ignore[arg-type]
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024), 9)  # 64 MiB of zeros in ~64 KiB
    assert gunzipped_size(Stream(bomb), "k", 1024 * 1024) == 1024 * 1024 + 1  # type: ignore[arg-type]
    # several gzip members are one stream to gunzip and to tar: all of them count
    twice = gzip.compress(b"x" * 1000) + gzip.compress(b"y" * 1000)
    assert gunzipped_size(Stream(twice), "k", 1 << 20) == 2000  # type: ignore[arg-type]


@pytest.mark.parametrize("data", [b"not gzip at all", gzip.compress(os.urandom(100_000))[:-200], b""])
def test_what_is_no_gzip_or_is_cut_is_said_so(data: bytes) -> None:
    with pytest.raises(ValueError):
        gunzipped_size(Stream(data), "k", 1 << 20)  # type: ignore[arg-type]
