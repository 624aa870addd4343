"""A job's log as the consumer sees it: the worker's lines only, live from Argo or from the archive, read as a
stream in bounded memory whatever its shape (one endless line, binary, invalid UTF-8).

Argo's executor writes short lines of its own into the main container's stream; they are recognised at a line's
start and left out. A line longer than :data:`LINE_MAX` cannot be one of them: it passes through as it arrives, in
pieces, byte for byte, and is never held whole.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

from api.services.tenant import TenantContext

# Argo's emissary executor logs into the main container's stream; those lines are not the worker's.
_EXECUTOR_LINE = re.compile(r"^time=\S+ level=\w+ msg=.*\bargo=true\b")
LINE_MAX = 64 * 1024  # longer lines are the worker's and stream through; executor lines are far shorter


def worker_line(line: str) -> bool:
    return not _EXECUTOR_LINE.match(line)


async def live_log(head: str | None, lines: AsyncIterator[str]) -> AsyncIterator[bytes]:
    if head is not None and worker_line(head):
        yield (head + "\n").encode()
    async for line in lines:
        if worker_line(line):
            yield (line + "\n").encode()


async def worker_bytes(chunks: AsyncIterator[bytes], line_max: int = LINE_MAX) -> AsyncIterator[bytes]:
    """The worker's part of a raw log stream: short lines the executor wrote are dropped, everything else passes
    through unchanged. Holds at most ``line_max`` bytes plus one chunk."""
    pending = b""  # the start of a line not yet judged (shorter than line_max)
    passing = False  # within a line too long to be the executor's: bytes go straight through
    async for chunk in chunks:
        out: list[bytes] = []
        while chunk:
            end = chunk.find(b"\n")
            piece, chunk = (chunk, b"") if end < 0 else (chunk[: end + 1], chunk[end + 1 :])
            if passing:
                out.append(piece)
                passing = end < 0
                continue
            pending += piece
            if pending.endswith(b"\n"):
                if worker_line(pending[:-1].decode(errors="replace")):
                    out.append(pending)
                pending = b""
            elif len(pending) > line_max:
                out.append(pending)
                pending, passing = b"", True
        if out:
            yield b"".join(out)
    if passing:  # the log ended within a long line: end it, as any last line
        yield b"\n"
    elif pending and worker_line(pending.decode(errors="replace")):
        yield pending + b"\n"


async def archived_log(tenant: TenantContext, entries: list[dict[str, Any]]) -> AsyncIterator[bytes]:
    for entry in entries:
        if not entry["key"].endswith(".log"):
            continue
        async for part in worker_bytes(tenant.storage.read_range(entry["key"], 0, entry["size"])):
            yield part
