"""A consumer attacking through everything it controls, on the real stack: env values, files, its worker's
outputs, uploads, headers, and the tenant API's own Kubernetes token. Each attack must fail with nothing created,
leaked or changed. The provisioner's side (identities, callbacks, tokens) is in tests/provisioner/test_trust.py."""

from __future__ import annotations

import base64
import io
import json
import socket
import tarfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import s3fs
from kubernetes import client as k8s

from api.client import Client
from devstack.stack import kube
from devstack.stack.launcher import StackInfo
from devstack.wait import wait_for
from tests.api.tenant import ApiTenant

PAYLOADS = {
    "P0": "{{workflow.name}}",
    "P1": '{{=sprig.env("HOME")}}',
    "P2": '"}],"image":"evil","command":["/bin/sh","-c","id"],"x":[{"',
    "P3": "$(id) `id` ${HOME}",
    "P4": "{{inputs.parameters.x}}{{pod.name}}\nsecond line",
    "P5": "x" * 20000,
}
ECHO_ENV = """#!/bin/sh
mkdir -p /output/tree
for k in P0 P1 P2 P3 P4 P5 Q0; do eval "v=\\${$k}"; printf '%s\\n' "$v" > "/output/tree/$k"; done
id -u > /output/result
"""
# Every trick a worker has to make the executor read something outside the output directory.
ESCAPE = """#!/bin/sh
S=/argo/secret/$HOSTNAME-s3
ln -s /var/run/secrets/kubernetes.io/serviceaccount/token /output/result
mkdir -p /output/tree/sub
echo ok > /output/tree/sub/real.txt
ln /output/tree/sub/real.txt /output/tree/hard.txt
ln -s $S/secretKey /output/tree/key
ln -s $S /output/tree/secrets
ln -s / /output/tree/root
mkfifo /output/tree/fifo
mkdir -p /var/run/argo/outputs/artifacts/output
ln -s $S/secretKey /var/run/argo/outputs/artifacts/output.tgz
ln -s /var/run/secrets/kubernetes.io/serviceaccount/token /var/run/argo/outputs/artifacts/output/result.tgz
echo planted
"""

pytestmark = pytest.mark.stack

JWT_HEAD = b"eyJhbGciOi"  # the start of every Kubernetes token


def _secret_or_none(api: k8s.ApiClient, namespace: str, name: str) -> dict[str, bytes] | None:
    try:
        data = k8s.CoreV1Api(api).read_namespaced_secret(name, namespace).data or {}
    except k8s.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return {k: base64.b64decode(v) for k, v in data.items()}


@pytest.fixture(scope="module")
def echo_job(adv: ApiTenant) -> dict[str, Any]:
    with adv.client() as client:
        client.upload_bytes("probe", "entrypoint.sh", ECHO_ENV.encode())
        client.upload_bytes("probe", "env", b"Q0='{{=1+1}}'\n")
        job = client.start("probe", PAYLOADS)
        return client.wait(job["id"], timeout=300)


def _members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {m.name: m for m in tar.getmembers()}


def _file(data: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        member = tar.extractfile(name)
        assert member is not None
        return member.read()


def _download(client: Client, job: str, name: str, tmp: Path) -> bytes:
    return client.download(job, name, tmp / name).read_bytes()


def test_env_values_reach_the_worker_verbatim_and_unevaluated(
    adv: ApiTenant, echo_job: dict[str, Any], tmp_path: Path
) -> None:
    assert echo_job["state"] == "COMPLETE", echo_job
    with adv.client() as client:
        tree = _download(client, echo_job["id"], "tree", tmp_path)
        assert _download(client, echo_job["id"], "result", tmp_path).strip() == b"65534"  # non-root by default
    for key, value in PAYLOADS.items():
        assert _file(tree, f"tree/{key}").decode() == value + "\n", key
    assert _file(tree, "tree/Q0") == b"{{=1+1}}\n"
    # The Workflow itself carries none of them: only the template reference.
    wf = _argo(adv, "GET", f"/api/v1/workflows/{adv.namespace}/{echo_job['id']}").json()
    assert {k: v for k, v in wf["spec"].items() if v} == {"workflowTemplateRef": {"name": "wml-probe"}}
    submitted = json.dumps({"spec": wf["spec"], "metadata": wf["metadata"]})  # the status holds our template
    assert not any(value in submitted for value in PAYLOADS.values())


def test_output_links_and_special_files_leak_nothing(adv: ApiTenant, stack: StackInfo, tmp_path: Path) -> None:
    with adv.client() as client:
        client.upload_bytes("probe", "entrypoint.sh", ESCAPE.encode())
        started = client.start("probe")["id"]
        api = kube.api_client(stack.kubeconfig)
        # the job's own S3 keys, read while it runs (its Secret goes when it ends)
        job_secret = wait_for(lambda: _secret_or_none(api, adv.namespace, f"{started}-s3"), 30, what="job keys")
        job = client.wait(started, timeout=300)
        assert job["state"] in {"COMPLETE", "EXECUTOR_ERROR"}, job  # never SYSTEM_ERROR: our side held
        listing = httpx.get(
            f"{adv.url}/v1/jobs/{job['id']}/outputs", headers={"Authorization": f"Bearer {adv.token}"}, timeout=60
        ).json()
        assert "result" in listing["missing"] and "not a regular file" in listing["missing"]["result"]
        tree = _download(client, job["id"], "tree", tmp_path)
    members = _members(tree)
    assert set(members) == {"tree/sub", "tree/sub/real.txt", "tree/hard.txt"}, sorted(members)
    assert all(m.isreg() or m.isdir() for m in members.values())
    assert _file(tree, "tree/hard.txt") == b"ok\n"
    # Whatever the executor may have stored: no object of the job holds a credential of the executor (its
    # Kubernetes token is a JWT: its header never appears), of the job or of the tenant.
    tenant_exec = base64.b64decode(
        (k8s.CoreV1Api(api).read_namespaced_secret("wml-s3", adv.namespace).data or {})["secretKey"]
    )
    needles = [JWT_HEAD, tenant_exec, job_secret["secretKey"], job_secret["sessionToken"]]
    fs = s3fs.S3FileSystem(
        key=stack.s3_access_key, secret=stack.s3_secret_key, endpoint_url=stack.s3_endpoint, skip_instance_cache=True
    )
    keys = adv.settings.keys
    objects = [
        *fs.find(f"{stack.bucket}/{keys.job(job['id'])}"),
        *fs.find(f"{stack.bucket}/{keys.executor(job['id'])}"),
    ]
    assert any(o.endswith("/outputs.tgz") for o in objects), objects
    for path in objects:
        data = fs.cat_file(path)
        blobs = [data]
        if path.endswith(".tgz"):
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
                blobs += [tar.extractfile(m).read() for m in tar.getmembers() if m.isreg()]  # type: ignore[union-attr]
        for blob in blobs:
            assert not any(needle in blob for needle in needles), path


def _argo(tenant: ApiTenant, method: str, path: str, body: Any = None) -> httpx.Response:
    token = tenant.settings.argo_token.get_secret_value()  # type: ignore[union-attr]
    return httpx.request(
        method,
        f"{tenant.settings.argo_server_url}{path}",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        verify=False,
        timeout=30,
    )


def _kube(tenant: ApiTenant, method: str, path: str, body: Any = None, patch: bool = False) -> httpx.Response:
    token = tenant.settings.argo_token.get_secret_value()  # type: ignore[union-attr]
    headers = {"Authorization": f"Bearer {token}"}
    if patch:
        headers["Content-Type"] = "application/merge-patch+json"
    return httpx.request(
        method,
        f"{tenant.settings.kube_api_url}{path}",
        content=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json", **headers},
        verify=str(tenant.settings.kube_ca_file),
        timeout=30,
    )


def _workflow(spec: dict[str, Any]) -> dict[str, Any]:
    return {"workflow": {"metadata": {"generateName": "evil-"}, "spec": spec}}


@pytest.mark.parametrize(
    "spec",
    [
        {  # an inline workflow: any image, any command
            "entrypoint": "x",
            "templates": [{"name": "x", "container": {"image": "imlahso/dummy-job", "command": ["id"]}}],
        },
        {"workflowTemplateRef": {"name": "wml-probe"}, "podSpecPatch": '{"containers":[{"name":"main","image":"x"}]}'},
        {"workflowTemplateRef": {"name": "wml-probe"}, "serviceAccountName": "wml-api"},
        {"workflowTemplateRef": {"name": "wml-probe"}, "arguments": {"parameters": [{"name": "a", "value": "b"}]}},
        {"workflowTemplateRef": {"name": "wml-probe"}, "artifactGC": {"podSpecPatch": "{}"}},
        {"workflowTemplateRef": {"name": "elsewhere"}},
    ],
    ids=["inline", "pod-spec-patch", "service-account", "arguments", "artifact-gc", "foreign-template"],
)
def test_the_api_token_submits_template_references_only(adv: ApiTenant, spec: dict[str, Any]) -> None:
    before = {
        w["metadata"]["name"] for w in _argo(adv, "GET", f"/api/v1/workflows/{adv.namespace}").json()["items"] or []
    }
    response = _argo(adv, "POST", f"/api/v1/workflows/{adv.namespace}", _workflow(spec))
    assert not response.is_success, response.text
    after = {
        w["metadata"]["name"] for w in _argo(adv, "GET", f"/api/v1/workflows/{adv.namespace}").json()["items"] or []
    }
    assert after == before


def test_the_api_token_cannot_read_or_forge_secrets(adv: ApiTenant, echo_job: dict[str, Any]) -> None:
    ns = adv.namespace
    assert _kube(adv, "GET", f"/api/v1/namespaces/{ns}/secrets").status_code == 403
    assert _kube(adv, "GET", f"/api/v1/namespaces/{ns}/secrets/wml-s3").status_code == 403
    minted = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "job-aaaaaaaaaaaa-env",
            "annotations": {"kubernetes.io/service-account.name": "wml-worker"},
        },
        "type": "kubernetes.io/service-account-token",
    }
    assert _kube(adv, "POST", f"/api/v1/namespaces/{ns}/secrets", minted).status_code in (400, 403, 422)
    other = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "wml-s3-copy"}, "stringData": {"a": "b"}}
    assert _kube(adv, "POST", f"/api/v1/namespaces/{ns}/secrets", other).status_code in (400, 403, 422)
    assert _kube(adv, "DELETE", f"/api/v1/namespaces/{ns}/secrets/wml-s3").status_code in (400, 403, 422)
    overwrite = {"stringData": {"accessKey": "x"}}
    assert _kube(adv, "PATCH", f"/api/v1/namespaces/{ns}/secrets/wml-s3", overwrite, patch=True).status_code in (
        400,
        403,
        422,
    )
    # an existing job's spec cannot be rewritten either
    path = f"/apis/argoproj.io/v1alpha1/namespaces/{ns}/workflows/{echo_job['id']}"
    rewrite = {"spec": {"podSpecPatch": '{"containers":[{"name":"main","image":"x"}]}'}}
    assert _kube(adv, "PATCH", path, rewrite, patch=True).status_code in (400, 403, 422)


# What Argo runs instead of the referenced template when a Workflow's status already holds one (issue #30).
FORGED_STATUS = {
    "storedWorkflowTemplateSpec": {
        "entrypoint": "x",
        "serviceAccountName": "wml-api",
        "templates": [{"name": "x", "container": {"image": "imlahso/dummy-job", "command": ["id"]}}],
    }
}


def test_a_workflow_cannot_bring_its_own_status(adv: ApiTenant, echo_job: dict[str, Any]) -> None:
    """The Workflow CRD has no status subresource: with the API's token, a create carrying a stored template (or an
    update replacing one) is refused by admission, straight to Kubernetes and through Argo Server alike."""
    ns = adv.namespace
    path = f"/apis/argoproj.io/v1alpha1/namespaces/{ns}/workflows"
    names_before = {w["metadata"]["name"] for w in _kube(adv, "GET", path).json()["items"]}
    forged = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"generateName": "evil-"},
        "spec": {"workflowTemplateRef": {"name": "wml-probe"}},
        "status": FORGED_STATUS,
    }
    direct = _kube(adv, "POST", path, forged)
    assert direct.status_code in (400, 403, 422), direct.text
    assert "carries no stored template" in direct.text
    through_argo = _argo(adv, "POST", f"/api/v1/workflows/{ns}", {"workflow": forged})
    assert not through_argo.is_success, through_argo.text
    replaced = _kube(adv, "PATCH", f"{path}/{echo_job['id']}", {"status": FORGED_STATUS}, patch=True)
    assert replaced.status_code in (400, 403, 422), replaced.text
    assert {w["metadata"]["name"] for w in _kube(adv, "GET", path).json()["items"]} == names_before
    # what the API itself does to a Workflow (a label) still goes through
    label = {"metadata": {"labels": {"probe": "yes"}}}
    assert _kube(adv, "PATCH", f"{path}/{echo_job['id']}", label, patch=True).status_code == 200


def _raw_request(url: str, head: str, body: bytes) -> tuple[int, int]:
    """Send a request's head and as much of ``body`` as the server takes; (status, body bytes sent)."""
    parts = urlsplit(url)
    sent = 0
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(head.encode())
        try:
            sock.settimeout(0.5)
            for offset in range(0, len(body), 65536):
                sock.sendall(body[offset : offset + 65536])
                sent += 65536
                try:
                    if sock.recv(1, socket.MSG_PEEK):
                        break
                except TimeoutError:
                    continue
        except (BrokenPipeError, ConnectionResetError):
            pass
        sock.settimeout(30)
        status_line = sock.recv(4096).split(b"\r\n", 1)[0]
    return int(status_line.split()[1]), sent


def test_unauthenticated_upload_is_refused_before_its_body(adv: ApiTenant) -> None:
    big = 1024**3  # announced; the client will not get far
    for path, ctype in (
        ("/v1/assets/probe/inputs/entrypoint.sh", "multipart/form-data; boundary=x"),
        ("/v1/assets/probe/inputs/entrypoint.sh", "application/octet-stream"),
    ):
        method = "POST" if ctype.startswith("multipart") else "PUT"
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\nContent-Length: {big}\r\n"
            "Connection: close\r\n\r\n"
        )
        status, sent = _raw_request(adv.url, head, b"\0" * (32 * 1024 * 1024))
        assert status == 401, (path, status)
        assert sent < 32 * 1024 * 1024, "the server read the body before checking the token"


def test_oversize_form_upload_is_refused_while_streaming(adv: ApiTenant) -> None:
    with adv.client() as client:
        staged = {s["name"] for s in client.staged("probe")}
        files = {"file": ("entrypoint.sh", b"#" * (1024 * 1024))}  # the input is capped at 64 KiB
        response = httpx.post(
            f"{adv.url}/v1/assets/probe/inputs/entrypoint.sh",
            files=files,
            headers={"Authorization": f"Bearer {adv.token}"},
            timeout=60,
        )
        assert response.status_code == 413, response.text
        malformed = httpx.post(
            f"{adv.url}/v1/assets/probe/inputs/entrypoint.sh",
            content=b"--x\r\nContent-Disposition: form-data; name=other\r\n\r\nabc\r\n--x--\r\n",
            headers={"Authorization": f"Bearer {adv.token}", "Content-Type": "multipart/form-data; boundary=x"},
            timeout=60,
        )
        assert malformed.status_code == 400, malformed.text
        assert {s["name"] for s in client.staged("probe")} == staged  # nothing changed


def test_giant_range_header_is_a_416(adv: ApiTenant, echo_job: dict[str, Any]) -> None:
    url = f"{adv.url}/v1/jobs/{echo_job['id']}/outputs/result"
    headers = {"Authorization": f"Bearer {adv.token}", "Range": "bytes=" + "9" * 4300 + "-"}
    response = httpx.get(url, headers=headers, timeout=30)
    assert response.status_code == 416, response.text


@pytest.mark.parametrize("path", ["/metrics", "/openapi.json", "/docs"])
def test_operator_surfaces_need_the_token(adv: ApiTenant, path: str) -> None:
    assert httpx.get(f"{adv.url}{path}", timeout=30).status_code == 401
    authed = httpx.get(f"{adv.url}{path}", headers={"Authorization": f"Bearer {adv.token}"}, timeout=30)
    assert authed.status_code == 200
