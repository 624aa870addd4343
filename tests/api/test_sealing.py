"""Sealing a job's outputs from the executor's archive, in the stack's MinIO: what a worker can put in its output
directory (links, hardlinks, FIFOs, devices, '..' names, undeclared files) never becomes an output."""

from __future__ import annotations

import asyncio
import io
import json
import tarfile

import pytest

from api.backends.s3 import ObjectStore
from api.services.outputs import FRAMING, SealOnce, seal
from templates import parse_document

ASSET = parse_document(
    {
        "name": "probe",
        "worker": {"image": "busybox", "outputDir": "/output"},
        "outputs": [
            {"name": "result", "kind": "file", "path": "/output/result"},
            {"name": "extra", "kind": "file", "path": "/output/extra", "required": False},
            {"name": "tree", "kind": "directory", "path": "/output/tree", "required": False},
        ],
    }
)
JOB = "job-0123456789abcdef"


def archive(*entries: tarfile.TarInfo | tuple[str, bytes]) -> bytes:
    """A tar.gz as Argo's executor writes the output directory (entries named output/...)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for entry in entries:
            if isinstance(entry, tarfile.TarInfo):
                tar.addfile(entry)
            else:
                name, data = entry
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def special(name: str, kind: bytes, target: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def run(storage: ObjectStore, data: bytes | None) -> tuple[dict, bytes | None, bytes | None]:
    if data is not None:
        storage.put_bytes(storage.keys.job_outputs_archive(JOB), data)
    sealed = asyncio.run(seal(storage, ASSET, JOB, "run-1"))

    def get(key: str) -> bytes | None:
        try:
            return storage.get_bytes(key)
        except FileNotFoundError:
            return None

    return (
        sealed.model_dump(mode="json") | {"required_missing": sealed.required_missing(ASSET)},
        get(storage.keys.job_output(JOB, "result")),
        get(storage.keys.job_output(JOB, "tree", directory=True)),
    )


def test_regular_files_are_sealed_with_their_digests(storage: ObjectStore) -> None:
    record, result, tree = run(storage, archive(("output/result", b"42"), ("output/tree/a/b.txt", b"b")))
    assert result == b"42"
    assert record["outputs"]["result"]["size"] == 2 and record["missing"] == {"extra": "not produced"}
    assert record["required_missing"] == []
    with tarfile.open(fileobj=io.BytesIO(tree or b""), mode="r:gz") as tar:
        assert {m.name: m.isreg() for m in tar.getmembers()} == {"tree/a/b.txt": True}
    # sealed once: the record is read back, the archive is not read again
    storage.remove_tree(storage.keys.job_outputs_archive(JOB))
    assert asyncio.run(seal(storage, ASSET, JOB, "run-1")).outputs == record["outputs"]


@pytest.mark.parametrize(
    "entry",
    [
        special("output/result", tarfile.SYMTYPE, "/var/run/secrets/kubernetes.io/serviceaccount/token"),
        special("output/result", tarfile.LNKTYPE, "output/other"),
        special("output/result", tarfile.FIFOTYPE),
        special("output/result", tarfile.CHRTYPE),
        special("output/result", tarfile.DIRTYPE),
    ],
    ids=["symlink", "hardlink", "fifo", "device", "directory"],
)
def test_a_file_output_that_is_not_a_regular_file_is_missing(storage: ObjectStore, entry: tarfile.TarInfo) -> None:
    record, result, _ = run(storage, archive(entry))
    assert result is None
    assert "not a regular file" in record["missing"]["result"] and record["required_missing"] == ["result"]


def test_links_and_specials_inside_a_directory_output_are_dropped(storage: ObjectStore) -> None:
    data = archive(
        ("output/tree/ok.txt", b"ok"),
        special("output/tree/key", tarfile.SYMTYPE, "/argo/secret/wml-s3/secretKey"),
        special("output/tree/root", tarfile.SYMTYPE, "/"),
        special("output/tree/hard", tarfile.LNKTYPE, "output/tree/ok.txt"),
        special("output/tree/fifo", tarfile.FIFOTYPE),
        ("output/../../etc/passwd", b"x"),
        ("output/tree/../../escape", b"x"),
        ("output/undeclared", b"x"),
    )
    record, _, tree = run(storage, data)
    with tarfile.open(fileobj=io.BytesIO(tree or b""), mode="r:gz") as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert set(members) == {"tree/ok.txt"} and members["tree/ok.txt"].isreg()
    assert record["dropped"] >= 5


@pytest.mark.parametrize(
    "data", [None, b"not a tar", archive(("output/result", b"1"))[:20]], ids=["none", "junk", "cut"]
)
def test_a_missing_or_damaged_archive_hands_back_nothing_more(storage: ObjectStore, data: bytes | None) -> None:
    record, result, _ = run(storage, data)
    assert result is None and record["required_missing"] == ["result"]
    assert (record["damaged"] is None) == (data is None)
    json.dumps(record)  # the record is plain JSON


def test_a_later_link_of_the_same_name_wins(storage: ObjectStore) -> None:
    data = archive(("output/result", b"42"), special("output/result", tarfile.SYMTYPE, "/etc/passwd"))
    record, _, _ = run(storage, data)
    assert "result" not in record["outputs"] and record["required_missing"] == ["result"]


def test_a_directory_output_cut_by_a_damaged_archive_is_not_handed_out(storage: ObjectStore) -> None:
    whole = archive(("output/result", b"42"), ("output/tree/big.bin", bytes(range(256)) * 4000))
    record, result, _ = run(storage, whole[: len(whole) // 2])
    assert record["damaged"] and "tree" in record["missing"] and "tree" not in record["outputs"]
    assert result == b"42"  # a whole file read before the damage stays


def test_sealing_twice_gives_the_same_bytes(storage: ObjectStore) -> None:
    data = archive(("output/result", b"42"), ("output/tree/a.txt", b"a"))
    record, _, first = run(storage, data)
    storage.remove_tree(storage.keys.job_seal(JOB))
    again, _, second = run(storage, data)
    assert first == second and record["outputs"] == again["outputs"]


def test_outputs_stop_at_the_output_cap(storage: ObjectStore) -> None:
    """Sparse files and hardlinks cost the worker no room but would cost S3 all of it: the cap counts bytes sealed."""
    small = parse_document({**ASSET.model_dump(by_alias=True, exclude_none=True), "limits": {"outputSize": "1Ki"}})
    data = archive(("output/result", b"r" * 600), ("output/tree/big.bin", bytes(600)))
    storage.put_bytes(storage.keys.job_outputs_archive(JOB), data)
    sealed = asyncio.run(seal(storage, small, JOB, "run-1"))
    assert sealed.outputs["result"]["size"] == 600  # within the cap, handed out
    assert "tree" not in sealed.outputs and "limits.outputSize" in sealed.missing["tree"]
    assert "limits.outputSize" in (sealed.damaged or "")


def test_a_new_run_of_a_reused_job_id_is_sealed_anew(storage: ObjectStore) -> None:
    """An Idempotency-Key reused after its Workflow expired names a new run: its outputs, not the old ones."""
    path = storage.keys.job_outputs_archive(JOB)
    storage.put_bytes(path, archive(("output/result", b"old")))
    assert asyncio.run(seal(storage, ASSET, JOB, "run-1")).outputs["result"]["size"] == 3
    storage.put_bytes(path, archive(("output/result", b"newer")))
    assert asyncio.run(seal(storage, ASSET, JOB, "run-1")).outputs["result"]["size"] == 3  # the same run: cached
    assert asyncio.run(seal(storage, ASSET, JOB, "run-2")).outputs["result"]["size"] == 5


def test_undeclared_members_count_against_the_budget_too(storage: ObjectStore) -> None:
    """A sparse undeclared file costs the worker nothing and sealing all of its decompression: reading stops at the
    cap (plus tar framing), whatever the member, and the record says how much was read."""
    small = parse_document({**ASSET.model_dump(by_alias=True, exclude_none=True), "limits": {"outputSize": "1Mi"}})
    cap = 1024 * 1024
    data = archive(("output/result", b"ok"), ("output/undeclared.bin", bytes(64 * cap)))
    assert len(data) < cap  # a few dozen KiB compressed
    storage.put_bytes(storage.keys.job_outputs_archive(JOB), data)
    sealed = asyncio.run(seal(storage, small, JOB, "run-1"))
    assert sealed.outputs["result"]["size"] == 2  # before the damage: kept
    assert "unpacks to more than limits.outputSize" in (sealed.damaged or "")
    assert cap < sealed.read <= cap + 3 * FRAMING + 2 * tarfile.RECORDSIZE  # the cap, framing, tar's read-ahead


def test_concurrent_readers_share_one_sealing(storage: ObjectStore) -> None:
    storage.put_bytes(storage.keys.job_outputs_archive(JOB), archive(("output/result", b"42")))
    once = SealOnce()

    async def readers() -> list[object]:
        return list(await asyncio.gather(*(once.seal(storage, ASSET, JOB, "run-1") for _ in range(10))))

    results = asyncio.run(readers())
    assert len({id(r) for r in results}) == 1  # one sealing, its record handed to all ten
    assert results[0].outputs["result"]["size"] == 2  # type: ignore[attr-defined]
