"""A zip input is judged by its central directory before it is accepted (issue #26): what its members declare
unpacked, read from the end of the object in ranged reads, never by unpacking it."""

from __future__ import annotations

import io
import zipfile

import pytest

from api.services.archives import declared_size


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
