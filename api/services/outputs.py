"""Sealing a finished job's outputs: from the executor's archive to the files consumers download.

Argo's executor saves the whole output directory, a volume mount point that a worker cannot replace by a symlink,
as one ``outputs.tgz``; inside it symlinks stay symlink entries and special files carry no content, so nothing
outside the directory can get in. The API then reads that archive once, as untrusted data, and writes each declared
output to keys only the API may write: a file output only from a regular file, a directory output re-packed from
its regular files and directories only. Links, devices, FIFOs and anything undeclared are dropped and reported.
The record of what was sealed (sizes, sha256, what is missing and why) is kept beside the job and read back.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import posixpath
import tarfile
import zlib
from datetime import UTC, datetime
from typing import IO, Any, cast

from pydantic import BaseModel, Field

from api.backends.claims import Claim, WorkflowClaims
from api.backends.s3 import ObjectStore
from api.backends.s3upload import ObjectWriter
from api.core.errors import KubeRejected, KubeUnavailable
from templates import Output, OutputKind, WorkflowAsset
from templates.asset import quantity

MAX_MEMBERS = 100_000  # bounds the work an archive of many tiny entries can cause
COPY_CHUNK = 1024 * 1024
FRAMING = 1024  # bytes of tar framing (a header and padding) allowed per member read, beyond the output cap


class Sealed(BaseModel):
    """What a job handed back: each output's size and sha256, and the outputs that are missing, with why. Stored as
    ``sealed.json`` beside the job (the API's key)."""

    outputs: dict[str, dict[str, Any]] = Field(default_factory=dict)
    missing: dict[str, str] = Field(default_factory=dict)
    dropped: int = 0  # archive entries that were not regular files or directories, or not declared
    damaged: str | None = None  # why the archive could not be read to its end
    sealed_at: str = ""
    run: str = ""  # the Workflow uid sealed: a job id reused after its Workflow expired is a new run
    read: int = 0  # bytes of the archive decompressed to seal it (every member, declared or not)
    over_cap: bool = False  # sealing stopped at the byte budget (limits.outputSize): ``damaged`` says where

    def required_missing(self, asset: WorkflowAsset) -> list[str]:
        return [o.name for o in asset.outputs if o.required and o.name in self.missing]


class _Hashing:
    """A write-only file that hashes and counts what passes through it to S3."""

    def __init__(self, target: ObjectWriter) -> None:
        self.target = target
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | memoryview) -> int:
        data = bytes(data)
        self.digest.update(data)
        self.size += len(data)
        self.target.write(data)
        return len(data)

    def flush(self) -> None:
        self.target.flush()


class _OverCap(Exception):
    """The archive holds more output bytes than the asset allows."""


class _Budgeted:
    """The decompressed archive, read with a budget over every byte of it: skipping an undeclared member costs the
    same decompression as copying it (a sparse file of gigabytes is a few megabytes compressed), so the budget
    counts all of it, whatever a header claims. The budget grows by :data:`FRAMING` per member seen."""

    def __init__(self, source: IO[bytes], budget: int) -> None:
        self.source, self.budget, self.read_bytes = source, budget, 0

    def read(self, size: int = -1) -> bytes:
        # tarfile reads in bounded blocks; a read of "everything" is refused rather than trusted
        data = self.source.read(size if size is not None and size >= 0 else COPY_CHUNK)
        self.read_bytes += len(data)
        if self.read_bytes > self.budget:
            raise _OverCap(f"the output archive unpacks to more than limits.outputSize allows ({self.budget} bytes)")
        return data


def _relative(member: str) -> str | None:
    """The entry's path below the output directory (Argo names entries ``<dir name>/<path>``)."""
    parts = [p for p in member.split("/") if p not in ("", ".")]
    if len(parts) < 2 or any(p == ".." for p in parts):
        return None
    return "/".join(parts[1:])


def _unpack(
    raw: _Budgeted,
    sealed: Sealed,
    files: dict[str, Output],
    dirs: dict[str, Output],
    packers: dict[str, tuple[_Hashing, tarfile.TarFile]],
    open_outputs: contextlib.ExitStack,
    storage: ObjectStore,
    job: str,
    budget: int,
) -> None:
    keys = storage.keys
    used = 0
    with tarfile.open(fileobj=cast(IO[bytes], raw), mode="r|") as tar:
        count = 0
        while (member := tar.next()) is not None:
            # stream mode keeps every header otherwise: memory would grow with the entries (typeshed omits .members)
            tar.members.clear()  # type: ignore[attr-defined]
            count += 1
            raw.budget += FRAMING
            if count > MAX_MEMBERS:
                sealed.dropped += 1
                break
            rel = _relative(member.name)
            if rel is None:
                continue
            if member.isreg() and (rel in files or any(rel.startswith(d + "/") for d in dirs)):
                # Sparse files and hardlinks take no room in the output volume but all of it here: count what
                # is written, and stop at the asset's output cap.
                used += member.size
                if used > budget:
                    raise _OverCap(f"the outputs exceed limits.outputSize ({budget} bytes)")
            if rel in files:
                out = files[rel]
                if not member.isreg():
                    # A later entry of the same name wins, as when unpacking: a link there is no output.
                    sealed.outputs.pop(out.name, None)
                    sealed.missing[out.name] = "not a regular file (links and special files are not outputs)"
                    continue
                sealed.missing.pop(out.name, None)
                source = tar.extractfile(member)
                assert source is not None
                with storage.writer(keys.job_output(job, out.name), budget) as target:
                    hashing = _Hashing(target)
                    while chunk := source.read(COPY_CHUNK):
                        hashing.write(chunk)
                sealed.outputs[out.name] = {"size": hashing.size, "sha256": hashing.digest.hexdigest()}
                continue
            owner = next((d for d in dirs if rel == d or rel.startswith(d + "/")), None)
            if owner is None or not (member.isreg() or member.isdir()):
                sealed.dropped += 1
                continue
            if owner not in packers:
                key = keys.job_output(job, dirs[owner].name, directory=True)
                hashing = _Hashing(open_outputs.enter_context(storage.writer(key, budget)))
                # gzip without a timestamp: sealing the same archive twice (two replicas) gives the same bytes
                gz = open_outputs.enter_context(gzip.GzipFile(fileobj=hashing, mode="wb", mtime=0))
                packer = tarfile.open(fileobj=gz, mode="w|")  # noqa: SIM115 - closed by the ExitStack below
                packers[owner] = (hashing, open_outputs.enter_context(packer))
            if rel == owner:
                continue  # the directory itself: its entries carry their paths
            packed = tarfile.TarInfo(posixpath.join(posixpath.basename(owner), posixpath.relpath(rel, owner)))
            packed.type, packed.mode, packed.mtime = member.type, member.mode & 0o755, member.mtime
            packed.size = member.size if member.isreg() else 0
            packers[owner][1].addfile(packed, tar.extractfile(member) if member.isreg() else None)


def _extract(storage: ObjectStore, asset: WorkflowAsset, job: str) -> Sealed:
    """Blocking: stream the archive once and write every declared output (run in a worker thread)."""
    keys = storage.keys
    root = (asset.worker.output_dir or "/").rstrip("/")
    files = {posixpath.relpath(o.path, root): o for o in asset.outputs if o.kind is OutputKind.FILE}
    dirs = {posixpath.relpath(o.path, root): o for o in asset.outputs if o.kind is OutputKind.DIRECTORY}
    sealed = Sealed()
    budget = int(quantity(asset.limits.output_size))
    packers: dict[str, tuple[_Hashing, tarfile.TarFile]] = {}
    archive = keys.job_outputs_archive(job)
    with contextlib.ExitStack() as open_outputs:  # closed last-in first-out: each tar before its S3 object
        try:
            raw = open_outputs.enter_context(storage.reader(archive))
        except FileNotFoundError:
            raw = None
        if raw is not None:
            unzipped = open_outputs.enter_context(gzip.GzipFile(fileobj=raw, mode="rb"))
            # tarfile reads a record (10 KiB) at a time, ahead of the member it is at: that much more may be read
            stream = _Budgeted(cast(IO[bytes], unzipped), budget + FRAMING + tarfile.RECORDSIZE)
            try:
                _unpack(stream, sealed, files, dirs, packers, open_outputs, storage, job, budget)
            except _OverCap as exc:
                sealed.damaged, sealed.over_cap = str(exc), True
            except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
                # A damaged archive is the job's fault, not a fault of S3: whole files read before the damage stay;
                # a directory output may be cut short, so none is handed out.
                sealed.damaged = f"{type(exc).__name__}: {exc}"[:300]
            sealed.read = stream.read_bytes
    for rel, (hashing, _) in packers.items():
        if sealed.damaged:
            sealed.missing[dirs[rel].name] = f"withheld: {sealed.damaged}"
        else:
            sealed.outputs[dirs[rel].name] = {"size": hashing.size, "sha256": hashing.digest.hexdigest()}
    for out in asset.outputs:
        if out.name not in sealed.outputs:
            # After damage or the cap, "not produced" cannot be told from "not reached": say why reading stopped.
            sealed.missing.setdefault(out.name, f"withheld: {sealed.damaged}" if sealed.damaged else "not produced")
    sealed.sealed_at = datetime.now(UTC).isoformat(timespec="seconds")
    return sealed


class SealOnce:
    """Concurrent readers of one job's outputs share one sealing: in this process through one task, across replicas
    through a claim on the job's Workflow (:mod:`api.backends.claims`); a replica that finds another one sealing
    waits for the record it writes. ``count``: sealings this process did (a figure for tests and operators)."""

    def __init__(self, claims: WorkflowClaims | None = None, poll_seconds: float = 0.25) -> None:
        self._running: dict[tuple[str, str], asyncio.Future[Sealed]] = {}
        self.claims = claims
        self.poll_seconds = poll_seconds
        self.count = 0

    async def seal(self, storage: ObjectStore, asset: WorkflowAsset, job: str, run: str) -> Sealed:
        key = (job, run)
        running = self._running.get(key)
        if running is not None:
            return await asyncio.shield(running)
        task = asyncio.ensure_future(self._once(storage, asset, job, run))
        self._running[key] = task
        try:
            return await asyncio.shield(task)  # a reader that goes away does not cancel the others' sealing
        finally:
            if task.done():
                self._running.pop(key, None)
            else:
                task.add_done_callback(lambda _: self._running.pop(key, None))

    async def _once(self, storage: ObjectStore, asset: WorkflowAsset, job: str, run: str) -> Sealed:
        while True:
            cached = await _record(storage, job, run)
            if cached is not None:
                return cached
            try:
                claim = Claim.GONE if self.claims is None else await self.claims.claim(job)
            except (KubeUnavailable, KubeRejected):
                claim = Claim.GONE  # no claim to be had: sealing twice writes the same bytes
            if claim is not Claim.TAKEN:
                break
            await asyncio.sleep(self.poll_seconds)  # another replica seals it: its record comes
        if claim is Claim.GONE:
            return await self._seal(storage, asset, job, run)
        assert self.claims is not None
        renewer = asyncio.ensure_future(self.claims.renewing(job))
        try:
            # read again under the claim: the last holder may have written its record and let go meanwhile
            return await _record(storage, job, run) or await self._seal(storage, asset, job, run)
        finally:
            renewer.cancel()
            await self.claims.release(job)

    async def _seal(self, storage: ObjectStore, asset: WorkflowAsset, job: str, run: str) -> Sealed:
        self.count += 1
        return await seal(storage, asset, job, run)


async def _record(storage: ObjectStore, job: str, run: str) -> Sealed | None:
    cached = await storage.read_json(storage.keys.job_seal(job))
    if isinstance(cached, dict) and cached.get("run", "") == run:
        return Sealed.model_validate(cached)
    return None


async def seal(storage: ObjectStore, asset: WorkflowAsset, job: str, run: str) -> Sealed:
    """The outputs of run ``run`` (the Workflow uid) of ``job``, sealed once (a repeated call reads the record)."""
    cached = await _record(storage, job, run)
    if cached is not None:
        return cached
    sealed: Sealed = await storage.blocking(_extract, storage, asset, job)
    sealed.run = run
    await storage.write_json(storage.keys.job_seal(job), sealed.model_dump(mode="json"))
    return sealed
