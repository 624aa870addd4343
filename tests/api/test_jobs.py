"""The consumer's whole flow on the real stack: inputs to S3, jobs on Argo, logs, outputs."""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from pathlib import Path

import httpx
import pytest
import s3fs

from api.client import Client, ClientError
from tests.api.tenant import EXAMPLES, ApiTenant
from tests.support.s3 import filesystem

pytestmark = pytest.mark.stack

INPUTS = EXAMPLES / "inputs"


def _run_dummy(client: Client, env: str, **params: str) -> dict:
    client.upload_bytes("dummy", "env", env.encode())
    job = client.start("dummy", params)
    return client.wait(job["id"], timeout=300)


def test_assets_are_the_registered_templates(client: Client) -> None:
    names = {a["name"] for a in client.assets()}
    assert {"dummy", "input-dummy"} <= names
    detail = client.asset("input-dummy")
    kinds = {i["name"]: i["kind"] for i in detail["inputs"]}
    assert kinds == {"env": "env", "input.zip": "archive", "input_testfile": "file", "entrypoint.sh": "file"}
    assert detail["outputs"][0]["name"] == "result"


def test_dummy_runs_and_result_downloads(client: Client, tmp_path: Path) -> None:
    env = (INPUTS / "dummy" / "env").read_text().replace("SLEEPTIME=10", "SLEEPTIME=2")
    staged = client.upload_bytes("dummy", "env", env.encode())
    assert staged["sha256"] == hashlib.sha256(env.encode()).hexdigest()
    job = client.start("dummy")
    assert job["state"] in {"QUEUED", "INITIALIZING", "RUNNING"}
    done = client.wait(job["id"], timeout=300)
    assert done["state"] == "COMPLETE", done
    assert any(s["type"] == "Pod" and s["phase"] == "Succeeded" for s in done["steps"])
    log = "\n".join(client.logs(job["id"]))
    assert "sleeping 2/2" in log and "moved /etc/os-release to /output/result" in log, log
    assert "argo=true" not in log  # the executor's own lines are not the worker's log
    outputs = {o["name"]: o for o in client.outputs(job["id"])}
    result = client.download(job["id"], "result", tmp_path / "result")
    content = result.read_bytes()
    assert b"ID=" in content  # /etc/os-release of the worker image
    assert outputs["result"]["size"] == len(content)
    assert outputs["result"]["sha256"] == hashlib.sha256(content).hexdigest()
    receipt = client.receipt(job["id"])
    assert receipt["outputs"]["result"] == outputs["result"]["sha256"]
    assert receipt["inputs"]["env"] == staged["sha256"]
    assert receipt["image"] == "docker.io/imlahso/dummy-job:latest"
    # HTTP Range
    ranged = client.http.get(f"/v1/jobs/{job['id']}/outputs/result", headers={"Range": "bytes=0-3"})
    assert ranged.status_code == 206 and ranged.content == content[:4]
    assert ranged.headers["content-range"] == f"bytes 0-3/{len(content)}"
    bad = client.http.get(f"/v1/jobs/{job['id']}/outputs/result", headers={"Range": f"bytes={len(content) + 5}-"})
    assert bad.status_code == 416


def test_input_dummy_gets_every_input(client: Client, tmp_path: Path) -> None:
    folder = INPUTS / "input-dummy"
    uploaded = {}
    for name in ("env", "input.zip", "input_testfile", "entrypoint.sh"):
        uploaded[name] = client.upload("input-dummy", name, folder / name)["sha256"]
        assert uploaded[name] == hashlib.sha256((folder / name).read_bytes()).hexdigest()
    assert {s["name"] for s in client.staged("input-dummy")} == {"env", "input.zip", "input_testfile", "entrypoint.sh"}
    job = client.start("input-dummy")
    again = client.start("input-dummy")
    done = client.wait(job["id"], timeout=300)
    # the receipt names each input by the sha256 its upload answered, the same for every job that used it
    assert client.receipt(job["id"])["inputs"] == uploaded
    assert client.receipt(client.wait(again["id"], timeout=300)["id"])["inputs"] == uploaded
    log = "\n".join(client.logs(job["id"]))
    assert done["state"] == "COMPLETE", (done, log)
    text = client.download(job["id"], "result", tmp_path / "r").read_text()
    assert "greeting: hello from the env input" in text
    assert "testfile: this is input_testfile" in text
    assert "zipped: hello from input.zip / nested file" in text


def test_failing_job_reports_executor_error_with_log(client: Client) -> None:
    done = _run_dummy(client, "SOURCE=/does/not/exist\nDESTINATION=/output/result\nSLEEPTIME=0\n")
    assert done["state"] == "EXECUTOR_ERROR"
    assert any("FAIL:" in line for line in client.logs(done["id"]))


def test_missing_required_input_or_key_is_refused(client: Client) -> None:
    with pytest.raises(ClientError) as info:
        client.upload_bytes("dummy", "env", b"SLEEPTIME=1\n")
        client.start("dummy")
    assert info.value.status == 422 and "required keys missing" in str(info.value)
    with pytest.raises(ClientError) as info:
        client.start("dummy", {"SOURCE": "/etc/os-release", "DESTINATION": "/output/result", "LD_PRELOAD": "/x"})
    assert info.value.status == 422


def test_cancel_and_delete(client: Client, tenant: ApiTenant) -> None:
    client.upload_bytes("dummy", "env", b"SOURCE=/etc/os-release\nDESTINATION=/output/result\nSLEEPTIME=120\n")
    job = client.start("dummy")
    canceled = client.cancel(job["id"])
    assert canceled["id"] == job["id"]
    done = client.wait(job["id"], timeout=120)
    assert done["state"] == "CANCELED"
    with pytest.raises(ClientError) as info:
        client.cancel(job["id"])
    assert info.value.status == 409
    client.delete(job["id"])
    with pytest.raises(ClientError) as info:
        client.job(job["id"])
    assert info.value.status == 404


def test_idempotent_start(client: Client) -> None:
    client.upload_bytes("dummy", "env", b"SOURCE=/etc/os-release\nDESTINATION=/output/result\nSLEEPTIME=0\n")
    key = uuid.uuid4().hex
    first = client.http.post("/v1/jobs", json={"asset": "dummy"}, headers={"Idempotency-Key": key})
    again = client.http.post("/v1/jobs", json={"asset": "dummy"}, headers={"Idempotency-Key": key})
    assert first.status_code == 201 and again.status_code == 200
    assert first.json()["id"] == again.json()["id"]
    other = client.http.post(
        "/v1/jobs", json={"asset": "dummy", "parameters": {"SLEEPTIME": "1"}}, headers={"Idempotency-Key": key}
    )
    assert other.status_code == 409
    client.wait(first.json()["id"], timeout=300)


def test_inputs_are_snapshotted_at_start(client: Client, tenant: ApiTenant) -> None:
    client.upload_bytes("dummy", "env", b"SOURCE=/etc/os-release\nDESTINATION=/output/result\nSLEEPTIME=0\n")
    job = client.start("dummy")
    client.upload_bytes("dummy", "env", b"SOURCE=/changed\nDESTINATION=/output/result\n")
    done = client.wait(job["id"], timeout=300)
    assert done["state"] == "COMPLETE"
    receipt = client.receipt(job["id"])
    assert (
        receipt["inputs"]["env"]
        == hashlib.sha256(b"SOURCE=/etc/os-release\nDESTINATION=/output/result\nSLEEPTIME=0\n").hexdigest()
    )


def test_pagination_and_filters(client: Client) -> None:
    for _ in range(3):
        _run_dummy(client, "SOURCE=/etc/os-release\nDESTINATION=/output/result\nSLEEPTIME=0\n")
    first = client.jobs(limit=2)
    assert len(first["items"]) == 2 and first["next"]
    second = client.jobs(limit=2, page=first["next"])
    assert not {j["id"] for j in first["items"]} & {j["id"] for j in second["items"]}
    complete = client.jobs(state="COMPLETE", asset="dummy", limit=200)["items"]
    assert complete and all(j["state"] == "COMPLETE" and j["asset"] == "dummy" for j in complete)
    assert client.jobs(asset="input-dummy-nope")["items"] == []


def test_tokens(tenant: ApiTenant) -> None:
    assert httpx.get(f"{tenant.url}/v1/assets").status_code == 401
    bad = httpx.get(f"{tenant.url}/v1/assets", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401 and bad.json()["detail"] == "invalid token"
    assert httpx.get(f"{tenant.url}/healthz").status_code == 200
    assert httpx.get(f"{tenant.url}/readyz").json() == {"status": "ready"}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/v1/assets/dummy/inputs/..%2Fx"),
        ("PUT", "/v1/assets/dummy/inputs/nope"),
        ("PUT", "/v1/assets/..%2F..%2Fetc/inputs/env"),
        ("GET", "/v1/jobs/..%2F..%2Fjobs"),
        ("GET", "/v1/jobs/job-0000000000000000"),
        ("GET", "/v1/jobs/job-0000000000000000/outputs/result"),
        ("GET", "/v1/assets/missing"),
    ],
)
def test_bad_names_are_4xx(client: Client, method: str, path: str) -> None:
    response = client.http.request(method, path, content=b"x")
    assert 400 <= response.status_code < 500, (path, response.status_code, response.text)


def test_oversize_upload_is_413_and_stores_nothing(client: Client) -> None:
    limit = next(i for i in client.asset("input-dummy")["inputs"] if i["name"] == "entrypoint.sh")["max_size"]
    before = {s["name"]: s["sha256"] for s in client.staged("input-dummy")}

    def body():  # no Content-Length: the cap must hold while streaming
        stream = io.BytesIO(b"#" * (limit + 1))
        while chunk := stream.read(4096):
            yield chunk

    response = client.http.put("/v1/assets/input-dummy/inputs/entrypoint.sh", content=body())
    assert response.status_code == 413
    after = {s["name"]: s["sha256"] for s in client.staged("input-dummy")}
    assert after == before


def _tenant_fs(tenant: ApiTenant) -> s3fs.S3FileSystem:
    settings = tenant.settings
    return filesystem(
        settings.s3_endpoint_url, settings.s3_access_key.get_secret_value(), settings.s3_secret_key.get_secret_value()
    )


def _open_multipart_uploads(fs: s3fs.S3FileSystem, bucket: str, prefix: str) -> list[dict]:
    return fs.call_s3("list_multipart_uploads", Bucket=bucket, Prefix=prefix).get("Uploads", [])


def test_multipart_upload_is_byte_exact_and_oversize_aborts_it(stack, tenant: ApiTenant, client: Client) -> None:
    """Several parts in flight at once: the object is still the bytes sent, in order; a cap hit after some
    parts went to S3 aborts the multipart upload (nothing stored, nothing left open)."""
    fs, bucket = _tenant_fs(tenant), tenant.settings.s3_bucket
    # the observer lists open multipart uploads, which the tenant's own S3 user may not (its policy is the object's)
    admin = filesystem(stack.s3_endpoint, stack.s3_access_key, stack.s3_secret_key)
    key = tenant.settings.keys.staging("input-dummy", "input_testfile")
    data = os.urandom(16 * 1024 * 1024 - 7)  # four parts, the last one short
    staged = client.upload_bytes("input-dummy", "input_testfile", data)
    assert staged["size"] == len(data) and staged["sha256"] == hashlib.sha256(data).hexdigest()
    assert hashlib.sha256(fs.cat_file(f"{bucket}/{key}")).hexdigest() == staged["sha256"]

    def too_big():  # no Content-Length: three parts reach S3 before the cap is crossed
        for _ in range(17):
            yield b"\x00" * (1024 * 1024)

    response = client.http.put("/v1/assets/input-dummy/inputs/input_testfile", content=too_big())
    assert response.status_code == 413
    assert {s["name"]: s["sha256"] for s in client.staged("input-dummy")}["input_testfile"] == staged["sha256"]
    assert hashlib.sha256(fs.cat_file(f"{bucket}/{key}")).hexdigest() == staged["sha256"]
    assert _open_multipart_uploads(admin, bucket, key) == []


def test_other_tenants_jobs_are_invisible(stack, client: Client) -> None:
    from tests.api.tenant import api_tenant

    done = _run_dummy(client, "SOURCE=/etc/os-release\nDESTINATION=/output/result\nSLEEPTIME=0\n")
    with api_tenant(stack, "other") as other, other.client() as intruder:
        with pytest.raises(ClientError) as info:
            intruder.job(done["id"])
        assert info.value.status == 404
        with pytest.raises(ClientError) as info:
            intruder.download(done["id"], "result", Path("/dev/null"))
        assert info.value.status == 404
        # and the first tenant's token is worthless here
        assert httpx.get(f"{other.url}/v1/assets", headers=client.http.headers).status_code == 401
