"""Streamed uploads through the SDK's public ``put_object``, against an in-memory S3 behind the SDK's HTTP pool: a
body of several parts is stored byte-exact, a small one is one PUT, and a body over its cap or a part S3 fails
aborts the multipart upload, leaving no object and no open upload (the stack's MinIO tests the same end to end)."""

from __future__ import annotations

import asyncio
import hashlib
import io
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import urllib3
from minio import Minio

from api.backends.s3 import ObjectStore
from api.backends.s3upload import PART
from api.core.errors import StorageUnavailable, TooLarge
from templates.keys import KeyLayout


class FakeS3(urllib3.PoolManager):
    """The few S3 calls ``put_object`` makes, answered from memory instead of over the network."""

    def __init__(self, fail_part: int | None = None) -> None:
        super().__init__()
        self.objects: dict[str, bytes] = {}
        self.uploads: dict[str, dict[int, bytes]] = {}
        self.calls: list[str] = []
        self.fail_part = fail_part

    def urlopen(self, method: str, url: str, redirect: bool = True, **kw: Any) -> Any:
        body = kw.get("body")
        parts = urlsplit(url)
        key = parts.path.split("/", 2)[2]
        query = parse_qs(parts.query, keep_blank_values=True)
        data = body.read() if hasattr(body, "read") else (body or b"")
        if method == "POST" and "uploads" in query:
            self.calls.append("create")
            self.uploads["u1"] = {}
            xml = "<InitiateMultipartUploadResult><UploadId>u1</UploadId></InitiateMultipartUploadResult>"
            return self._answer(200, xml.encode())
        if method == "PUT" and "partNumber" in query:
            number = int(query["partNumber"][0])
            self.calls.append(f"part {number}")
            if number == self.fail_part:
                return self._answer(500, b"<Error><Code>InternalError</Code><Message>x</Message></Error>")
            self.uploads[query["uploadId"][0]][number] = bytes(data)
            return self._answer(200, b"", {"ETag": f'"e{number}"'})
        if method == "POST" and "uploadId" in query:
            self.calls.append("complete")
            held = self.uploads.pop(query["uploadId"][0])
            self.objects[key] = b"".join(held[n] for n in sorted(held))
            xml = f'<CompleteMultipartUploadResult><Key>{key}</Key><ETag>"x"</ETag></CompleteMultipartUploadResult>'
            return self._answer(200, xml.encode())
        if method == "DELETE" and "uploadId" in query:
            self.calls.append("abort")
            self.uploads.pop(query["uploadId"][0], None)
            return self._answer(204, b"")
        if method == "PUT":
            self.calls.append("put")
            self.objects[key] = bytes(data)
            return self._answer(200, b"", {"ETag": '"p"'})
        raise AssertionError(f"unexpected {method} {url}")

    @staticmethod
    def _answer(status: int, data: bytes, headers: dict[str, str] | None = None) -> urllib3.HTTPResponse:
        return urllib3.HTTPResponse(
            body=io.BytesIO(data), headers=headers or {}, status=status, preload_content=False, request_method="GET"
        )


def store(fake: FakeS3) -> ObjectStore:
    # The SDK's own seam: its HTTP pool (urllib3's PoolManager) is a constructor argument.
    client = Minio("s3.test:9000", access_key="a", secret_key="s", secure=False, region="us-east-1", http_client=fake)
    return ObjectStore(client, "bucket", KeyLayout("tenants/t"))


async def chunks(data: bytes, size: int = 256 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_a_body_of_several_parts_is_stored_byte_exact() -> None:
    fake = FakeS3()
    data = bytes(range(256)) * (PART * 2 // 256 + 4096)  # two parts and a bit
    size, sha = asyncio.run(store(fake).write_stream("tenants/t/k", chunks(data), 10 * PART))
    assert (size, sha) == (len(data), hashlib.sha256(data).hexdigest())
    assert fake.objects["tenants/t/k"] == data
    assert fake.calls == ["create", "part 1", "part 2", "part 3", "complete"]


def test_a_small_body_is_one_put() -> None:
    fake = FakeS3()
    assert asyncio.run(store(fake).write_stream("tenants/t/k", chunks(b"hello"), 10)) == (
        5,
        hashlib.sha256(b"hello").hexdigest(),
    )
    assert fake.objects == {"tenants/t/k": b"hello"} and fake.calls == ["put"]


def test_a_body_over_its_cap_aborts_and_leaves_nothing() -> None:
    fake = FakeS3()
    with pytest.raises(TooLarge):
        asyncio.run(store(fake).write_stream("tenants/t/k", chunks(b"x" * (3 * PART)), 2 * PART))
    assert fake.objects == {} and fake.uploads == {}
    assert fake.calls[-1] == "abort"


def test_a_failed_part_aborts_and_is_a_fault_of_s3() -> None:
    fake = FakeS3(fail_part=2)
    with pytest.raises(StorageUnavailable):
        asyncio.run(store(fake).write_stream("tenants/t/k", chunks(b"y" * (4 * PART)), 10 * PART))
    assert fake.objects == {} and fake.uploads == {}
    assert fake.calls[-1] == "abort"


def test_the_blocking_writer_stores_on_finish_and_nothing_on_abort() -> None:
    fake = FakeS3()
    objects = store(fake)
    data = b"z" * (PART + 123)
    with objects.writer("tenants/t/a", 10 * PART) as target:
        target.write(data)
    assert fake.objects["tenants/t/a"] == data
    with pytest.raises(RuntimeError), objects.writer("tenants/t/b", 10 * PART) as target:
        target.write(data)
        raise RuntimeError("the archive broke")
    assert "tenants/t/b" not in fake.objects and fake.uploads == {}
