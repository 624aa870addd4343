"""The local stack really runs what `templates` compiles: the `dummy` asset's WorkflowTemplate is
registered in a fresh namespace, a job is submitted through Argo Server (client auth, a ServiceAccount
token), its container runs under the kubelet, and Argo uploads its output to MinIO. Also: failures surface
the worker's `FAIL:` line, and `argo lint` accepts every compiled example and rejects a broken template."""

from __future__ import annotations

import asyncio
import io
import json
import secrets
import subprocess
import tarfile
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from api.backends.sts import JobCredentials, MinioSts
from api.services.jobkeys import job_policy
from devstack.stack import StackInfo, ensure_stack, kube, s3
from devstack.stack.config import Layout
from devstack.wait import wait_for
from provisioner.manifests import TenantSpec
from templates import CompileOptions, StorageTarget, compile_asset, job_workflow, load_file, new_job_id
from templates.compiler import to_yaml
from templates.jobs import env_secret, s3_secret
from templates.keys import KeyLayout
from tests.api.tenant import EXAMPLES, prepare_namespace, provisioner_settings, remove_tenant
from tests.support.examples import EXAMPLE_FILES

pytestmark = pytest.mark.stack


@dataclass
class Tenant:
    name: str
    namespace: str
    token: str
    stack: StackInfo
    api: k8s.ApiClient
    spec: TenantSpec

    def argo(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        req = urllib.request.Request(
            f"{self.stack.argo_server_url}{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                raw = resp.read().decode()
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{method} {path}: HTTP {exc.code}: {exc.read().decode()[:500]}") from exc
        return raw if path.split("?")[0].endswith("/log") else json.loads(raw)

    def submit(self, env: dict[str, str]) -> str:
        """Start the compiled dummy template as one job, exactly as the consumer API does: its environment and its
        own S3 keys (minted with MinIO's STS as the tenant's executor user) in Secrets of the job's own."""
        job = new_job_id()
        core = k8s.CoreV1Api(self.api)
        core.create_namespaced_secret(self.namespace, env_secret(job, env, self.name))
        creds = asyncio.run(self._mint(job))
        keys = (creds.access_key, creds.secret_key.get_secret_value(), creds.session_token.get_secret_value())
        core.create_namespaced_secret(self.namespace, s3_secret(job, *keys, self.name))
        manifest = job_workflow(load_file(EXAMPLES / "dummy.yaml"), namespace=self.namespace, job_id=job)
        self.argo("POST", f"/api/v1/workflows/{self.namespace}", {"workflow": manifest})
        return job

    async def _mint(self, job: str) -> JobCredentials:
        sts = MinioSts(self.stack.s3_endpoint, self.spec.exec_access_key, self.spec.exec_secret_key, None)
        try:
            prefix = provisioner_settings(self.stack).s3_prefix_for(self.name)
            policy = job_policy(self.stack.bucket, KeyLayout(prefix), job)
            return await sts.assume(policy, 900, revoke_type=job)
        finally:
            await sts.aclose()

    def wait(self, name: str, timeout: float = 240) -> dict[str, Any]:
        def finished() -> dict[str, Any] | None:
            wf = self.argo("GET", f"/api/v1/workflows/{self.namespace}/{name}")
            return dict(wf) if wf.get("status", {}).get("phase") in ("Succeeded", "Failed", "Error") else None

        return wait_for(finished, timeout, 2.0, f"workflow {name} to finish")  # type: ignore[no-any-return]


@pytest.fixture
def tenant(stack: StackInfo) -> Iterator[Tenant]:
    """A fresh tenant as the provisioner makes it, with every example asset's compiled template registered."""
    api = kube.api_client(stack.kubeconfig)
    name = f"stack-{uuid.uuid4().hex[:8]}"
    spec, token = prepare_namespace(stack, api, name, secrets.token_urlsafe(16))
    try:
        yield Tenant(name, spec.namespace, token, stack, api, spec)
    finally:
        remove_tenant(stack, api, spec)


def test_ensure_stack_is_idempotent(stack: StackInfo) -> None:
    again = ensure_stack()
    assert again.started == ()
    assert again.kubeconfig == stack.kubeconfig


def test_dummy_job_runs_and_uploads_its_result(tenant: Tenant) -> None:
    name = tenant.submit({"SOURCE": "/etc/os-release", "DESTINATION": "/output/result", "SLEEPTIME": "2"})
    wf = tenant.wait(name)
    assert wf["status"]["phase"] == "Succeeded", wf["status"]
    st = tenant.stack
    key = f"tenants/{tenant.name}/exec/{name}/outputs.tgz"  # the output directory, as Argo saved it
    archive = s3.get_object(st.s3_endpoint, st.bucket, key, st.s3_access_key, st.s3_secret_key)
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        member = tar.extractfile("output/result")
        assert member is not None
        body = member.read().decode()
    assert "ID=" in body and "PRETTY_NAME=" in body
    logs = tenant.argo("GET", f"/api/v1/workflows/{tenant.namespace}/{name}/log?logOptions.container=main")
    assert "sleeping 2/2" in logs and "moved /etc/os-release to /output/result" in logs


def test_missing_source_fails_with_fail_line(tenant: Tenant) -> None:
    name = tenant.submit({"DESTINATION": "/output/result", "SLEEPTIME": "0"})
    wf = tenant.wait(name)
    assert wf["status"]["phase"] == "Failed", wf["status"]
    logs = tenant.argo("GET", f"/api/v1/workflows/{tenant.namespace}/{name}/log?logOptions.container=main")
    lines = [json.loads(line)["result"]["content"] for line in logs.splitlines() if line.strip()]
    assert any(line.startswith("FAIL: ") for line in lines), lines


def _argo_lint(path: Path) -> subprocess.CompletedProcess[str]:
    argo = Layout().argo_bin / "argo"
    return subprocess.run(
        [str(argo), "lint", "--offline", "--output", "simple", str(path)], capture_output=True, text=True
    )


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_argo_lint_accepts_every_compiled_example(path: Path, tmp_path: Path) -> None:
    target = StorageTarget(endpoint="10.88.0.1:9000", bucket="workflows", prefix="tenants/t", credentials_secret="s3")
    manifest = compile_asset(load_file(path), target, CompileOptions(namespace="wml-t", tenant="t")).to_dict()
    compiled = tmp_path / "template.yaml"
    compiled.write_text(to_yaml(manifest))
    ok = _argo_lint(compiled)
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_argo_lint_rejects_a_broken_template(tmp_path: Path) -> None:
    target = StorageTarget(endpoint="10.88.0.1:9000", bucket="workflows", prefix="tenants/t", credentials_secret="s3")
    manifest = compile_asset(load_file(EXAMPLES / "dummy.yaml"), target, CompileOptions(namespace="wml-t")).to_dict()
    manifest["spec"]["entrypoint"] = "does-not-exist"
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(manifest))
    bad = _argo_lint(broken)
    assert bad.returncode != 0
    assert "does-not-exist" in bad.stdout + bad.stderr
