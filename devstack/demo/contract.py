"""One EDC contract, end to end, on the local stack — what `make run` shows and the e2e test checks.

The current path: EDC 0.15.1 with our provisioner as its data plane (data plane signaling).

1. bring up (or reuse) the local stack and import our image into its containerd;
2. deploy the provisioner from `argo/base` (a Deployment in namespace workflow-middlelayer, with the
   example assets), serving data plane signaling;
3. start two real EDC 0.15.1 control planes (built once from Maven Central, see devstack/edc/connector.py): the
   provider, which listens on the node bridge so that the provisioner pod registers with it and calls back,
   and a consumer; our provisioner registers as the provider's data plane;
4. as the consumer: negotiate a contract for `dummy` over DSP, start an HttpData-PULL transfer; the provider
   signals `start` to our provisioner, which makes the tenant and answers with its API endpoint and a token;
   the consumer reads them from its `TransferProcessStarted` event and, with that token, uploads `dummy`'s env
   input, starts a job, follows its log and downloads `result` from the tenant's API pod;
5. the consumer terminates the transfer: EDC signals `terminate` and the tenant's namespace goes.

EDC 0.10.0's HTTP provisioner path is played by tests/edc/test_real_connector.py.
"""

from __future__ import annotations

import secrets
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from kubernetes import client as k8s

from api.client import Client
from devstack.demo.deploy import deploy_provisioner
from devstack.demo.events import Events
from devstack.edc.connector import CONTEXT, EDC, V0_15, Connector, ensure_runtime
from devstack.stack import config, kube
from devstack.stack.app_image import Target, ensure_app_image
from devstack.stack.launcher import StackInfo, ensure_stack
from devstack.wait import wait_for

# EDC 0.10's data plane forwards a body as text lines joined by "\n": no trailing newline, or it is dropped.
DUMMY_ENV = b"SOURCE=/etc/os-release\nDESTINATION=/output/result\nSLEEPTIME=5"
SOURCE_TYPE = "WorkflowMiddleLayer"  # the DataAddress type of assets whose transfers the provider signals to us


@dataclass
class Outcome:
    tenant: str
    namespace: str
    job: str
    state: str
    log: list[str]
    result: str
    edr_endpoint: str
    provider_states: list[str] = field(default_factory=list)
    namespace_gone: bool = False


def _say(text: str) -> None:
    print(f"\033[1m==>\033[0m {text}", flush=True)


def api_ready(url: str) -> bool:
    try:
        return httpx.get(f"{url.rstrip('/')}/readyz", timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


def _grant(provisioner: str, admin_token: str, transfer_process_id: str) -> dict[str, Any] | None:
    """The provisioner's record of this transfer, from its admin API."""
    headers = {"Authorization": f"Bearer {admin_token}"}
    grants = httpx.get(f"{provisioner}/admin/grants", headers=headers, timeout=10).json()
    return next((g for g in grants if g["transfer_process_id"] == transfer_process_id), None)


def play(stack: StackInfo | None = None, echo: Callable[[str], None] = _say) -> Outcome:
    stack = stack or ensure_stack()
    echo(f"local stack up — Argo Server: {stack.argo_server_url}   MinIO: {stack.s3_endpoint}")
    image, api_image = ensure_app_image(Target.PROVISIONER), ensure_app_image(Target.API)
    echo(f"our images {image}, {api_image} built from argo/images/Dockerfile (podman), imported into containerd")
    runtime = ensure_runtime(echo=lambda line: echo(f"EDC: {line}"), release=V0_15)
    api = kube.api_client(stack.kubeconfig)
    key = f"edc-{uuid.uuid4().hex}"
    admin_token = secrets.token_urlsafe(24)  # this run's provisioner admin token
    events = Events()
    with tempfile.TemporaryDirectory(prefix="wml-edc-") as tmp, events.serve() as events_url:
        work = Path(tmp)
        provider = Connector("provider", key, work, host=config.BRIDGE_IP, release=V0_15)
        consumer = Connector("consumer", key, work, release=V0_15)
        with provider.start(runtime), consumer.start(runtime):
            echo(f"EDC {V0_15.version} provider (control API {provider.control}) and consumer started")
            provisioner = deploy_provisioner(
                stack,
                image,
                provider.management.removesuffix("/management"),
                key,
                admin_token,
                control_url=provider.control,
                control_key=provider.control_key,
                api_image=api_image,
            )
            echo(f"provisioner deployed (kustomize build of argo/overlays/local) at {provisioner}")
            wait_for(lambda: _registered(provider), 120, 1.0, "the provisioner's data plane registration")
            echo("provisioner registered as the provider's data plane (POST {control}/v1/dataplanes), AVAILABLE")
            asset = {"@context": CONTEXT, "@id": "dummy", "properties": {}, "dataAddress": {"type": SOURCE_TYPE}}
            provider.call("POST", "/v3/assets", asset)
            provider.open_contract("dummy")
            echo(f"provider offers asset `dummy` (DataAddress type {SOURCE_TYPE} → our data plane)")
            agreement = consumer.negotiate(provider, "dummy")
            echo(f"consumer negotiated contract {agreement} over DSP")
            requested = time.monotonic()
            consumer_tp = consumer.transfer(provider, agreement, callbacks=[events_url])
            echo(f"HttpData-PULL transfer {consumer_tp}: EDC → start → tenant → our answer …")
            event = wait_for(lambda: events.started(consumer_tp), 300, 0.2, "the consumer's started event")
            properties = event["payload"]["dataAddress"]["properties"]
            endpoint, token = properties[f"{EDC}endpoint"], properties[f"{EDC}authorization"]
            process = wait_for(lambda: provider.provider_transfer(consumer_tp), 60, 0.5, "provider transfer")
            states = [provider.call("GET", f"/v3/transferprocesses/{process['@id']}")["state"]]
            grant = _grant(provisioner, admin_token, process["@id"]) or {}
            tenant = grant.get("tenant_id") or ""
            namespace = f"wml-{tenant}"
            echo(
                f"transfer {states[0]} {time.monotonic() - requested:.1f}s after the request: tenant {tenant}"
                f" (namespace {namespace}) for `{grant.get('consumer_id')}`"
            )
            echo(f"consumer's started event: endpoint {endpoint} + a bearer token of this transfer")
            # the endpoint is the ingress URL of the tenant's API, as in production
            wait_for(lambda: api_ready(endpoint), 180, 1.0, "the tenant API pod, through the ingress")
            with Client(endpoint, token) as client:
                job, state, log, result = _consume(client, work, echo)
            consumer.terminate(consumer_tp, reason="contract work done")
            echo("consumer terminated the transfer → the provider signals terminate to our data plane")
            gone = wait_namespace_gone(api, namespace)
            final = provider.wait_state(f"/v3/transferprocesses/{process['@id']}", {"TERMINATED", "DEPROVISIONED"}, 60)[
                "state"
            ]
            states.append(final)
            echo(f"namespace {namespace} {'is gone' if gone else 'is still there'}; EDC transfer state {final}")
        return Outcome(tenant, namespace, job, state, log, result, endpoint, states, gone)


def _registered(provider: Connector) -> bool:
    """Our data plane is registered and its health check passed: EDC selects only AVAILABLE data planes (a
    transfer requested before then fails with "No dataplane found")."""
    response = httpx.get(f"{provider.control}/v1/dataplanes", headers={"x-api-key": provider.control_key}, timeout=10)
    listed = response.json() if response.is_success else []
    return any(
        d.get("@id") == "workflow-middlelayer" and d.get("state") == "AVAILABLE"
        for d in (listed if isinstance(listed, list) else [listed])
    )


def _consume(client: Client, tmp: Path, echo: Callable[[str], None]) -> tuple[str, str, list[str], str]:
    """What the consumer does with its endpoint and token: upload the input, start, follow the log, download."""
    echo(f"assets of this contract: {[a['name'] for a in client.assets()]}")
    staged = client.upload_bytes("dummy", "env", DUMMY_ENV)
    echo(f"uploaded input env: {staged['size']} bytes, sha256 {staged['sha256'][:16]}…")
    job = client.start("dummy")["id"]
    echo(f"job {job} started; its log:")
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


def wait_namespace_gone(api: k8s.ApiClient, namespace: str, timeout: float = 180) -> bool:
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
