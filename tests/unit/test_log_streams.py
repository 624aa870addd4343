"""Logs are read as streams in bounded memory whatever their shape: one endless line, binary, invalid UTF-8; the
executor's own lines are left out, the worker's pass byte for byte (issue #26: a 300 MB line OOM-killed an API pod)."""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import AsyncIterator, Iterable

from api.services.logs import capped, cut_marker, worker_bytes

EXECUTOR = b'time=2026-01-01T00:00:00Z level=info msg="saving" argo=true\n'


async def _chunks(parts: Iterable[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def _worker(parts: Iterable[bytes], line_max: int = 64) -> bytes:
    async def collect() -> bytes:
        return b"".join([piece async for piece in worker_bytes(_chunks(parts), line_max)])

    return asyncio.run(collect())


def test_executor_lines_go_worker_lines_stay_byte_for_byte() -> None:
    raw = b"hello\n" + EXECUTOR + b"\xff\xfe binary \x00\n" + b"last"
    for size in (1, 3, 7, len(raw)):
        parts = [raw[i : i + size] for i in range(0, len(raw), size)]
        assert _worker(parts, line_max=1024) == b"hello\n\xff\xfe binary \x00\nlast\n"


def test_a_long_line_streams_through_and_ends_like_any_line() -> None:
    long = b"x" * 1000
    assert _worker([long[:300], long[300:], b"\nshort\n"], line_max=64) == long + b"\nshort\n"
    assert _worker([long], line_max=64) == long + b"\n"  # no newline at the end: one added, as for short lines
    # an executor-looking line longer than the bound is the worker's (the executor's are short)
    assert _worker([EXECUTOR[:-1] + b"y" * 100 + b"\n"], line_max=64) == EXECUTOR[:-1] + b"y" * 100 + b"\n"


def test_an_endless_line_is_never_held_whole() -> None:
    chunk = b"z" * 65536
    total = 0

    async def endless() -> AsyncIterator[bytes]:
        for _ in range(2000):  # 128 MiB, generated
            yield chunk

    async def drain() -> int:
        seen = 0
        async for piece in worker_bytes(endless()):
            seen += len(piece)
        return seen

    tracemalloc.start()
    total = asyncio.run(drain())
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert total == 2000 * 65536 + 1
    assert peak < 4 * 1024 * 1024, peak


def _capped(parts: Iterable[bytes], limit: int) -> bytes:
    async def collect() -> bytes:
        return b"".join([piece async for piece in capped(_chunks(parts), limit)])

    return asyncio.run(collect())


def test_a_stored_log_is_cut_at_its_cap_with_a_marker() -> None:
    """The finishing loop asks the kubelet for one byte over the cap: a log of exactly the cap is kept whole and
    unmarked, anything longer is cut there and says so."""
    assert _capped([b"abc", b"def"], 6) == b"abcdef"
    assert _capped([b"abc", b"defg"], 6) == b"abcdef" + cut_marker(6)
    assert _capped([b"abcdefgh"], 3) == b"abc" + cut_marker(3)
    assert _capped([b"abc", b"", b"d"], 3) == b"abc" + cut_marker(3)
    assert b"cut at 3 bytes" in cut_marker(3)
