"""Issue #28 on the real stack: where the operator exposes the object store to consumers, a large output is answered
with a presigned URL of that one object (307), which the client follows without the tenant token; the bytes are
the sealed ones; the URL reads nothing else and says when it expires."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from devstack.stack.launcher import StackInfo
from tests.api.tenant import ApiTenant, api_tenant
from tests.support.probe import PROBE

pytestmark = pytest.mark.stack

WRITE = (
    b"#!/bin/sh\nhead -c 3145728 /dev/urandom > /output/result\nmkdir -p /output/tree\necho small > /output/tree/a\n"
)


@pytest.fixture(scope="module")
def presigning(stack: StackInfo) -> Iterator[ApiTenant]:
    with api_tenant(
        stack, "presign", extra_assets=(PROBE,), s3_public_url=stack.s3_endpoint, presign_min_bytes=1024**2
    ) as tenant:
        yield tenant


def test_a_large_output_goes_straight_from_the_object_store(presigning: ApiTenant, tmp_path: Path) -> None:
    with presigning.client() as client:
        client.upload_bytes("probe", "entrypoint.sh", WRITE)
        job = client.wait(client.start("probe")["id"], timeout=300)
        assert job["state"] == "COMPLETE", job
        listed = {o["name"]: o for o in client.outputs(job["id"])}
        data = client.download(job["id"], "result", tmp_path / "result").read_bytes()
    assert len(data) == 3 * 1024**2 == listed["result"]["size"]
    assert hashlib.sha256(data).hexdigest() == listed["result"]["sha256"]

    auth = {"Authorization": f"Bearer {presigning.token}"}
    answer = httpx.get(f"{presigning.url}/v1/jobs/{job['id']}/outputs/result", headers=auth)
    assert answer.status_code == 307
    location = answer.headers["location"]
    s3 = urlsplit(presigning.settings.s3_public_url or "")
    url = urlsplit(location)
    assert (url.scheme, url.netloc) == (s3.scheme, s3.netloc)
    query = parse_qs(url.query)
    assert query["X-Amz-Expires"] == ["300"] and "X-Amz-Signature" in query
    assert presigning.token not in location
    assert httpx.get(location).content == data  # no token needed, none sent
    # the URL reads that object only: another key under the same signature is refused
    other = location.replace("/outputs/result", "/outputs/tree.tgz")
    assert other != location and httpx.get(other).status_code == 403
    # a small output still streams through the API
    small = httpx.get(f"{presigning.url}/v1/jobs/{job['id']}/outputs/tree", headers=auth)
    assert small.status_code == 200 and small.content


def test_without_a_public_address_every_download_streams(adv: ApiTenant, tmp_path: Path) -> None:
    assert adv.settings.s3_public_url is None
    with adv.client() as client:
        client.upload_bytes("probe", "entrypoint.sh", WRITE)
        job = client.wait(client.start("probe")["id"], timeout=300)
    answer = httpx.get(
        f"{adv.url}/v1/jobs/{job['id']}/outputs/result", headers={"Authorization": f"Bearer {adv.token}"}
    )
    assert answer.status_code == 200 and len(answer.content) == 3 * 1024**2
