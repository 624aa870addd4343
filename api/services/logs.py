"""A job's log as the consumer sees it: the worker's lines only, live from the kubelet or, once the job's end is
settled, from the copy the API stored; read as a stream in bounded memory whatever its shape (one endless line,
binary, invalid UTF-8), and at most ``log_max_bytes`` per pod either way, cut with a visible marker.

Live logs come from the kubelet through the Kubernetes API (``pods/log``), not through Argo Server: Argo Server
parses each log line for a timestamp and logs every line it cannot parse whole, at ERROR level, so one consumer
reading a long single-line log would write that log into Argo Server's own, once per read (seen: 2 GB for five
reads of a 300 MB line).

Argo's executor writes short lines of its own into the main container's stream; they are recognised at a line's
start and left out. A line longer than :data:`LINE_MAX` cannot be one of them: it passes through as it arrives, in
pieces, byte for byte, and is never held whole.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

from api.backends.kube import JobPod
from api.core.errors import KubeRejected
from api.services.tenant import TenantContext

MAIN = "main"  # the worker's container in an Argo pod
WAIT_FOR_POD_SECONDS = 600.0  # a followed log waits this long for the job's first pod to start

# Argo's emissary executor logs into the main container's stream; those lines are not the worker's.
_EXECUTOR_LINE = re.compile(r"^time=\S+ level=\w+ msg=.*\bargo=true\b")
LINE_MAX = 64 * 1024  # longer lines are the worker's and stream through; executor lines are far shorter


def worker_line(line: str) -> bool:
    return not _EXECUTOR_LINE.match(line)


def cut_marker(limit: int) -> bytes:
    return f"\n[workflow-middlelayer: log cut at {limit} bytes]\n".encode()


async def capped(chunks: AsyncIterator[bytes], limit: int, cut: list[bool] | None = None) -> AsyncIterator[bytes]:
    """At most ``limit`` bytes of ``chunks``, then the cut marker if there was more (the source is asked for one
    byte over the limit, so that "exactly at the limit" and "more" tell apart); ``cut`` gets True appended then."""
    sent = 0
    async for chunk in chunks:
        room = limit - sent
        if len(chunk) > room:
            if room > 0:
                yield chunk[:room]
            yield cut_marker(limit)
            if cut is not None:
                cut.append(True)
            return
        sent += len(chunk)
        yield chunk


def pod_log(tenant: TenantContext, pod: str, follow: bool = False) -> AsyncIterator[bytes]:
    """One pod's raw log from the kubelet, capped at ``log_max_bytes`` with the marker."""
    limit = tenant.settings.log_max_bytes
    return capped(tenant.kube.container_log(pod, MAIN, limit + 1, follow), limit)


async def live_log(tenant: TenantContext, job: str, follow: bool, wait: bool) -> AsyncIterator[bytes]:
    """The worker's part of the job's pods' logs, in the order they ran; ``follow``: the last one until it ends;
    ``wait``: for the job's pod to start, if it has not yet."""
    pods = await _started_pods(tenant, job, follow and wait)
    for index, pod in enumerate(pods):
        try:
            async for part in worker_bytes(pod_log(tenant, pod.name, follow and index == len(pods) - 1)):
                yield part
        except KubeRejected:
            continue  # not started, or gone meanwhile (its stored copy is served once the job is settled)


async def _started_pods(tenant: TenantContext, job: str, wait: bool) -> list[JobPod]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_FOR_POD_SECONDS
    while True:
        pods = await tenant.kube.job_pods(job)
        if not wait or (pods and pods[-1].phase != "Pending") or loop.time() > deadline:
            return pods
        await asyncio.sleep(1.0)


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
