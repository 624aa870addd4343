"""The local stack really runs workflows: a hand-written dummy-job WorkflowTemplate is registered
and submitted through Argo Server (client auth, a ServiceAccount token), its container runs under
the kubelet, and Argo uploads its output to MinIO. Also: failures surface the worker's `FAIL:` line,
and `argo lint` accepts a valid template and rejects a broken one."""

from __future__ import annotations

import json
import subprocess
import time
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

from tests.stack import StackInfo, ensure_stack, kube, s3
from tests.stack.config import Layout

pytestmark = pytest.mark.stack

WORKFLOW_TEMPLATE = """
apiVersion: argoproj.io/v1alpha1
kind: WorkflowTemplate
metadata:
  name: dummy
spec:
  entrypoint: main
  serviceAccountName: default
  arguments:
    parameters:
      - {name: source, value: /etc/os-release}
      - {name: destination, value: /output/result}
      - {name: sleeptime, value: "2"}
      - {name: result-key, value: unset}
  templates:
    - name: main
      inputs:
        parameters:
          - {name: source}
          - {name: destination}
          - {name: sleeptime}
          - {name: result-key}
      container:
        image: docker.io/imlahso/dummy-job:latest
        imagePullPolicy: IfNotPresent
        workingDir: /app
        command: [/bin/sh, entrypoint.sh]
        env:
          - {name: SOURCE, value: "{{inputs.parameters.source}}"}
          - {name: DESTINATION, value: "{{inputs.parameters.destination}}"}
          - {name: SLEEPTIME, value: "{{inputs.parameters.sleeptime}}"}
      outputs:
        artifacts:
          - name: result
            path: /output/result
            archive: {none: {}}
            s3:
              endpoint: S3_HOST
              insecure: true
              bucket: BUCKET
              key: "{{inputs.parameters.result-key}}"
              accessKeySecret: {name: s3-credentials, key: accessKey}
              secretKeySecret: {name: s3-credentials, key: secretKey}
"""


@dataclass
class Tenant:
    namespace: str
    token: str
    stack: StackInfo

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

    def submit(self, **parameters: str) -> str:
        wf = self.argo(
            "POST",
            f"/api/v1/workflows/{self.namespace}/submit",
            {
                "resourceKind": "WorkflowTemplate",
                "resourceName": "dummy",
                "submitOptions": {
                    "generateName": "dummy-",
                    "parameters": [f"{k.replace('_', '-')}={v}" for k, v in parameters.items()],
                },
            },
        )
        return str(wf["metadata"]["name"])

    def wait(self, name: str, timeout: float = 240) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            wf = self.argo("GET", f"/api/v1/workflows/{self.namespace}/{name}")
            if wf.get("status", {}).get("phase") in ("Succeeded", "Failed", "Error"):
                return dict(wf)
            time.sleep(2)
        raise AssertionError(f"workflow {name} did not finish in {timeout}s: {wf.get('status')}")


@pytest.fixture
def tenant(stack: StackInfo) -> Iterator[Tenant]:
    """A fresh namespace with S3 credentials, executor RBAC, and a submitter ServiceAccount."""
    api = kube.api_client(stack.kubeconfig)
    core = k8s.CoreV1Api(api)
    ns = f"stack-test-{uuid.uuid4().hex[:8]}"
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=ns)))
    try:
        core.create_namespaced_secret(
            ns,
            k8s.V1Secret(
                metadata=k8s.V1ObjectMeta(name="s3-credentials"),
                string_data={"accessKey": stack.s3_access_key, "secretKey": stack.s3_secret_key},
            ),
        )
        kube.grant_executor(api, ns)
        core.create_namespaced_service_account(ns, k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name="submitter")))
        kube.apply(
            kube.dynamic(api),
            [
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "Role",
                    "metadata": {"name": "submitter", "namespace": ns},
                    "rules": [
                        {
                            "apiGroups": ["argoproj.io"],
                            "resources": ["workflows", "workflowtemplates"],
                            "verbs": ["create", "get", "list", "watch", "update", "patch", "delete"],
                        },
                        {"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list", "watch"]},
                    ],
                },
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "RoleBinding",
                    "metadata": {"name": "submitter", "namespace": ns},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "submitter"},
                    "subjects": [{"kind": "ServiceAccount", "name": "submitter", "namespace": ns}],
                },
            ],
        )
        t = Tenant(ns, kube.service_account_token(api, ns, "submitter"), stack)
        template = yaml.safe_load(WORKFLOW_TEMPLATE.replace("S3_HOST", stack.s3_host).replace("BUCKET", stack.bucket))
        t.argo("POST", f"/api/v1/workflow-templates/{ns}", {"template": template})
        yield t
    finally:
        core.delete_namespace(ns)


def test_ensure_stack_is_idempotent(stack: StackInfo) -> None:
    again = ensure_stack()
    assert again.started == ()
    assert again.kubeconfig == stack.kubeconfig


def test_dummy_job_runs_and_uploads_its_result(tenant: Tenant) -> None:
    key = f"stack-tests/{tenant.namespace}/result"
    name = tenant.submit(result_key=key, sleeptime="2")
    wf = tenant.wait(name)
    assert wf["status"]["phase"] == "Succeeded", wf["status"]
    st = tenant.stack
    body = s3.get_object(st.s3_endpoint, st.bucket, key, st.s3_access_key, st.s3_secret_key).decode()
    assert "ID=" in body and "PRETTY_NAME=" in body
    logs = tenant.argo("GET", f"/api/v1/workflows/{tenant.namespace}/{name}/log?logOptions.container=main")
    assert "sleeping 2/2" in logs and "moved /etc/os-release to /output/result" in logs


def test_missing_source_fails_with_fail_line(tenant: Tenant) -> None:
    name = tenant.submit(source="", result_key=f"stack-tests/{tenant.namespace}/never")
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


def test_argo_lint_accepts_valid_and_rejects_broken(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(WORKFLOW_TEMPLATE.replace("S3_HOST", "10.88.0.1:9000").replace("BUCKET", "workflows"))
    ok = _argo_lint(good)
    assert ok.returncode == 0, ok.stdout + ok.stderr

    broken = tmp_path / "broken.yaml"
    broken.write_text(good.read_text().replace("entrypoint: main", "entrypoint: does-not-exist"))
    bad = _argo_lint(broken)
    assert bad.returncode != 0
    assert "does-not-exist" in bad.stdout + bad.stderr
