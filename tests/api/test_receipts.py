"""Receipts prove something: each input by the sha256 its upload answered (a directory by its staged tree digest),
the same for every job that used it, and each output by the sha256 of what is served."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from tests.api.tenant import ApiTenant

pytestmark = pytest.mark.stack

LIST_INPUTS = """#!/bin/sh
find /data /bundle -type f | sort > /output/result
cat /data/a.txt /data/sub/b.txt /bundle/c.txt >> /output/result
"""


def _tgz(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_receipts_name_every_kind_of_input_by_its_upload(adv: ApiTenant, tmp_path: Path) -> None:
    with adv.client() as client:
        bundle = _tgz({"c.txt": b"c\n", "d.txt": b"d\n"})  # two entries: Argo unpacks them into the directory
        uploaded = {
            "entrypoint.sh": client.upload_bytes("probe", "entrypoint.sh", LIST_INPUTS.encode())["sha256"],
            "bundle.tgz": client.upload_bytes("probe", "bundle.tgz", bundle)["sha256"],
            "env": client.upload_bytes("probe", "env", b"GREETING=hello\n")["sha256"],
        }
        for rel, data in (("a.txt", b"a\n"), ("sub/b.txt", b"b\n")):
            response = client.http.put(f"/v1/assets/probe/inputs/data/{rel}", content=data)
            assert response.status_code == 201, response.text
        staged = {s["name"]: s["sha256"] for s in client.staged("probe")}
        uploaded["data"] = staged["data"]
        assert {k: staged[k] for k in uploaded} == uploaded
        assert uploaded["env"] == hashlib.sha256(b"GREETING=hello\n").hexdigest()

        jobs = [client.start("probe")["id"] for _ in range(2)]
        receipts = []
        for job in jobs:
            done = client.wait(job, timeout=300)
            assert done["state"] == "COMPLETE", done
            result = client.download(job, "result", tmp_path / f"{job}.txt").read_bytes()
            assert result.endswith(b"a\nb\nc\n"), result
            receipt = client.receipt(job)
            assert receipt["inputs"] == uploaded
            assert receipt["outputs"]["result"] == hashlib.sha256(result).hexdigest()
            assert receipt["outputs_missing"] == {"tree": "not produced"}
            receipts.append(receipt)
        assert receipts[0]["inputs"] == receipts[1]["inputs"]  # the same uploads, the same digests
