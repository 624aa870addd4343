"""The API's S3 layer against the stack's MinIO: a key names an object or a folder, and the operations that take
one treat both alike (an exact key is never mistaken for "nothing there"), without touching neighbours whose
names merely start the same."""

from __future__ import annotations

import asyncio

import pytest

from api.backends.s3 import ObjectStore
from api.services import listings


def test_a_key_names_an_object_or_a_folder(storage: ObjectStore) -> None:
    base = storage.keys.prefix
    storage.put_bytes(f"{base}/jobs/job-1/sealed.json", b"{}")
    storage.put_bytes(f"{base}/jobs/job-1/in/a/b.txt", b"bb")
    storage.put_bytes(f"{base}/jobs/job-10/sealed.json", b"{}")  # a neighbour: job-1 is its name's start

    async def check() -> None:
        assert [e["key"] for e in await storage.list_prefix(f"{base}/jobs/job-1/sealed.json")] == [
            f"{base}/jobs/job-1/sealed.json"
        ]
        assert {e["key"] for e in await storage.list_prefix(f"{base}/jobs/job-1")} == {
            f"{base}/jobs/job-1/sealed.json",
            f"{base}/jobs/job-1/in/a/b.txt",
        }
        assert await storage.newest(f"{base}/jobs/job-1/sealed.json") is not None
        assert await storage.newest(f"{base}/jobs/job-2") is None
        assert await listings.job_ids(storage) == ["job-1", "job-10"]
        assert await storage.size(f"{base}/jobs/job-1/in/a/b.txt") == 2
        with pytest.raises(FileNotFoundError):
            await storage.size(f"{base}/jobs/job-1/in")  # a folder has no size
        await storage.delete_prefix(f"{base}/jobs/job-1")
        assert await listings.job_ids(storage) == ["job-10"]
        assert await storage.read_json(f"{base}/jobs/job-10/sealed.json") == {}

    asyncio.run(check())
