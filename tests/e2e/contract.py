"""One EDC contract, end to end, on the local stack — what `make run` shows and the e2e test checks.

1. bring up (or reuse) the local stack and import our image into its containerd;
2. deploy the provisioner from `argo/base` (a Deployment in namespace workflow-middlelayer, with the
   example assets), and start a stand-in for the EDC connector's management API on the node bridge
   (it receives our callbacks and checks their x-api-key);
3. send EDC's provision request exactly as EDC v0.15 sends it; wait for the callback with the tenant
   API's address and token;
4. as the consumer, through the tenant's API *pod*: upload `dummy`'s env input, start a job, follow its
   log, download `result`;
5. send EDC's deprovision request and show that the tenant's namespace is gone.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
from kubernetes import client as k8s

from api.client import Client
from provisioner.app import PROVISION_PATH
from provisioner.schemas import ContentDataAddress
from tests.e2e.deploy import deploy_provisioner
from tests.provisioner.conftest import edc_request
from tests.provisioner.helpers import ADMIN_TOKEN
from tests.provisioner.servers import API_KEY, EdcStub, ThreadedServer, wait_for
from tests.stack import config, kube
from tests.stack.app_image import ensure_app_image
from tests.stack.launcher import StackInfo, ensure_stack

DUMMY_ENV = b"SOURCE=/etc/os-release\nDESTINATION=/output/result\nSLEEPTIME=5\n"


@dataclass
class Outcome:
    tenant: str
    namespace: str
    job: str
    state: str
    log: list[str]
    result: str
    callback_body: dict
    namespace_gone: bool


def _say(text: str) -> None:
    print(f"\033[1m==>\033[0m {text}", flush=True)


def _cluster_url(api: k8s.ApiClient, base_url: str) -> str:
    """The local stack has no cluster DNS: resolve `<service>.<namespace>.svc` to the Service's ClusterIP."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    if not host.endswith(".svc"):
        return base_url
    service, namespace = host.split(".")[:2]
    ip = k8s.CoreV1Api(api).read_namespaced_service(service, namespace).spec.cluster_ip
    return urlunsplit(parts._replace(netloc=f"{ip}:{parts.port or 80}"))


def _api_ready(url: str) -> bool:
    try:
        return httpx.get(f"{url.rstrip('/')}/readyz", timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


def play(stack: StackInfo | None = None, echo: Callable[[str], None] = _say) -> Outcome:
    stack = stack or ensure_stack()
    echo(f"local stack up — Argo Server: {stack.argo_server_url}   MinIO: {stack.s3_endpoint}")
    image = ensure_app_image()
    echo(f"our image {image} imported into containerd (no registry)")
    api = kube.api_client(stack.kubeconfig)
    stub = EdcStub()
    # The provisioner runs in a pod: the EDC stand-in listens on the node bridge so that it can call back.
    with tempfile.TemporaryDirectory() as tmp, ThreadedServer(stub.app(), host=config.BRIDGE_IP) as edc:
        echo(f"EDC stand-in (management API, callback receiver) on {edc.url}")
        provisioner = deploy_provisioner(stack, image, edc.url, API_KEY, ADMIN_TOKEN)
        echo(f"provisioner deployed from argo/base at {provisioner} (assets: dummy, input-dummy)")
        body = edc_request(consumer=f"consumer-{uuid.uuid4().hex[:6]}", callback=f"{edc.url}/management/callback")
        answer = httpx.post(f"{provisioner}{PROVISION_PATH}", json=body, timeout=30)
        echo(f"EDC → provision (transfer {body['transferProcessId']}): HTTP {answer.status_code}")
        answer.raise_for_status()
        call = wait_for(lambda: stub.provisions(body["transferProcessId"]), 180, 0.2, "callback")[0]
        address = ContentDataAddress.model_validate(call.body["contentDataAddress"])
        echo(f"callback received: HttpData baseUrl={address.get('baseUrl')} authKey={address.get('authKey')}")
        tenant = answer.json()["tenant"]
        namespace = f"wml-{tenant}"
        url = _cluster_url(api, address.get("baseUrl"))
        echo(f"waiting for the tenant's API pod in {namespace} ({url}; API docs at {url}docs)")
        wait_for(lambda: _api_ready(url), 180, 1.0, "the tenant API pod")
        with Client(url, call.body["apiKeyJwt"]) as client:
            job, state, log, result = _consume(client, tenant, Path(tmp), echo)
        answer = httpx.post(f"{provisioner}{PROVISION_PATH}", json={**body, "type": "deprovision"}, timeout=30)
        echo(f"EDC → deprovision: HTTP {answer.status_code}")
        gone = _wait_namespace_gone(api, namespace)
        echo(f"namespace {namespace} {'is gone' if gone else 'is still there'}; MinIO user and objects removed")
        return Outcome(tenant, namespace, job, state, log, result, call.body, gone)


def _consume(client: Client, tenant: str, tmp: Path, echo: Callable[[str], None]) -> tuple[str, str, list[str], str]:
    """What the consumer does: upload the input, start a job, follow its log, download the result."""
    echo(f"assets of this contract: {[a['name'] for a in client.assets()]}")
    staged = client.upload_bytes("dummy", "env", DUMMY_ENV)
    echo(f"uploaded input env: {staged['size']} bytes, sha256 {staged['sha256'][:16]}…")
    job = client.start("dummy", idempotency_key=f"demo-{tenant}")["id"]
    echo(f"job {job} started; following its log:")
    wait_for(lambda: client.job(job)["state"] not in {"QUEUED", "INITIALIZING"}, 180, 0.5, "the worker to start")
    log = []
    for line in client.logs(job, follow=True):
        log.append(line)
        echo(f"    | {line}")
    done = client.wait(job, timeout=300)
    echo(f"job {job}: {done['state']}")
    result = ""
    if done["state"] == "COMPLETE":
        result = client.download(job, "result", tmp / "result").read_text()
        echo("result:\n" + "\n".join(f"    {line}" for line in result.splitlines()))
    return job, done["state"], log, result


def _wait_namespace_gone(api: k8s.ApiClient, namespace: str, timeout: float = 180) -> bool:
    core = k8s.CoreV1Api(api)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            core.read_namespace(namespace)
        except k8s.ApiException as exc:
            if exc.status == 404:
                return True
            raise
        time.sleep(1)
    return False
