"""A job's log as the consumer sees it: the worker's lines only, live from Argo or from the archive."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

from api.services.tenant import TenantContext

# Argo's emissary executor logs into the main container's stream; those lines are not the worker's.
_EXECUTOR_LINE = re.compile(r"^time=\S+ level=\w+ msg=.*\bargo=true\b")


def worker_line(line: str) -> bool:
    return not _EXECUTOR_LINE.match(line)


async def live_log(head: str | None, lines: AsyncIterator[str]) -> AsyncIterator[bytes]:
    if head is not None and worker_line(head):
        yield (head + "\n").encode()
    async for line in lines:
        if worker_line(line):
            yield (line + "\n").encode()


async def archived_log(tenant: TenantContext, entries: list[dict[str, Any]]) -> AsyncIterator[bytes]:
    for entry in entries:
        if not entry["key"].endswith("main.log"):
            continue
        rest = b""
        async for chunk in tenant.storage.read_range(entry["key"], 0, entry["size"]):
            *lines, rest = (rest + chunk).split(b"\n")
            kept = [line for line in lines if worker_line(line.decode(errors="replace"))]
            if kept:
                yield b"\n".join(kept) + b"\n"
        if rest and worker_line(rest.decode(errors="replace")):
            yield rest + b"\n"
