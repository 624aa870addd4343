"""One EDC contract, end to end, on the local stack — what `make run` shows and the e2e test checks.

1. bring up (or reuse) the local stack and import our image into its containerd;
2. deploy the provisioner from `argo/base` (a Deployment in namespace workflow-middlelayer, with the
   example assets);
3. start two real EDC 0.10.0 connectors (built once from Maven Central, see tests/edc/connector.py): the
   provider, whose HTTP provisioner calls our provisioner pod and which listens on the node bridge so that
   the pod can call back, and a consumer;
4. as the consumer: negotiate a contract for `dummy` over DSP, start an HttpData-PULL transfer, read the EDR,
   and through the provider's EDC data plane upload `dummy`'s env input, start a job, follow its log and
   download `result` from the tenant's API pod;
5. terminate the transfer on the provider: EDC sends the deprovision request and the tenant's namespace goes.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from kubernetes import client as k8s

from api.client import Client
from provisioner.app import PROVISION_PATH
from tests.e2e.deploy import deploy_provisioner, inbound_key
from tests.edc.connector import EDC_VERSION, Connector, ensure_runtime
from tests.provisioner.helpers import ADMIN_TOKEN
from tests.provisioner.servers import wait_for
from tests.stack import config, kube
from tests.stack.app_image import ensure_app_image
from tests.stack.launcher import StackInfo, ensure_stack

# EDC's data plane forwards a body as text lines joined by "\n": no trailing newline, or it would be dropped.
DUMMY_ENV = b"SOURCE=/etc/os-release\nDESTINATION=/output/result\nSLEEPTIME=5"


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


def _cluster_url(api: k8s.ApiClient, base_url: str) -> str:
    """The local stack has no cluster DNS: resolve `<service>.<namespace>.svc` to the Service's ClusterIP."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    if not host.endswith(".svc"):
        return base_url
    service, namespace = host.split(".")[:2]
    ip = k8s.CoreV1Api(api).read_namespaced_service(service, namespace).spec.cluster_ip
    return urlunsplit(parts._replace(netloc=f"{ip}:{parts.port or 80}"))


def map_service(api: k8s.ApiClient, base_url: str, hosts: Path) -> str:
    """Cluster DNS for a JVM started with ``-Djdk.net.hosts.file=hosts`` (EDC's data plane): the URL's
    `<service>.<namespace>.svc` -> its ClusterIP. Returns the URL with the ClusterIP, for direct use here."""
    direct = _cluster_url(api, base_url)
    with hosts.open("a") as out:
        out.write(f"{urlsplit(direct).hostname} {urlsplit(base_url).hostname}\n")
    return direct


def api_ready(url: str) -> bool:
    try:
        return httpx.get(f"{url.rstrip('/')}/readyz", timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


def _grant(provisioner: str, transfer_process_id: str) -> dict[str, Any] | None:
    """The provisioner's record of this transfer, from its admin API."""
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    grants = httpx.get(f"{provisioner}/admin/grants", headers=headers, timeout=10).json()
    return next((g for g in grants if g["transfer_process_id"] == transfer_process_id), None)


def play(stack: StackInfo | None = None, echo: Callable[[str], None] = _say) -> Outcome:
    stack = stack or ensure_stack()
    echo(f"local stack up — Argo Server: {stack.argo_server_url}   MinIO: {stack.s3_endpoint}")
    image = ensure_app_image()
    echo(f"our image {image} imported into containerd (no registry)")
    runtime = ensure_runtime(echo=lambda line: echo(f"EDC: {line}"))
    api = kube.api_client(stack.kubeconfig)
    key = f"edc-{uuid.uuid4().hex}"
    with tempfile.TemporaryDirectory(prefix="wml-edc-") as tmp:
        work = Path(tmp)
        hosts = work / "hosts"  # cluster DNS for the provider's data plane (the local stack has none)
        hosts.write_text("127.0.0.1 localhost\n")
        provider = Connector("provider", key, work, hosts_file=hosts, host=config.BRIDGE_IP)
        consumer = Connector("consumer", key, work)
        edc_url = provider.management.removesuffix("/management")
        provisioner = deploy_provisioner(stack, image, edc_url, key, ADMIN_TOKEN)
        echo(f"provisioner deployed from argo/base at {provisioner} (assets: dummy, input-dummy)")
        # EDC's HTTP provisioner sends no header of its own: the inbound key travels as the last path segment.
        provider.provisioner_endpoint = f"{provisioner}{PROVISION_PATH}/{inbound_key(key)}"
        with provider.start(runtime), consumer.start(runtime):
            echo(f"EDC {EDC_VERSION} provider (management API {provider.management}) and consumer started")
            provider.offer_asset("dummy", f"{provisioner}{PROVISION_PATH}")
            echo("provider offers asset `dummy` (DataAddress type HttpProvision → our provisioner)")
            agreement = consumer.negotiate(provider, "dummy")
            echo(f"consumer negotiated contract {agreement} over DSP")
            requested = time.monotonic()
            consumer_tp = consumer.transfer(provider, agreement)
            process = wait_for(lambda: provider.provider_transfer(consumer_tp), 60, 0.5, "provider transfer")
            tp = process["@id"]
            echo(f"HttpData-PULL transfer {tp}: EDC → provision request → tenant → our callback …")
            started = provider.wait_state(f"/v3/transferprocesses/{tp}", {"STARTED"}, 300, {"TERMINATED"})
            states = ["STARTED"]
            grant = _grant(provisioner, tp) or {}
            tenant = grant.get("tenant_id") or ""
            namespace = f"wml-{tenant}"
            echo(
                f"transfer {started['state']} {time.monotonic() - requested:.1f}s after the request: tenant {tenant}"
                f" (namespace {namespace}) for `{grant.get('consumer_id')}`"
            )
            edr = wait_for(lambda: consumer.edr(consumer_tp), 60, 0.5, "the consumer's EDR")
            echo(f"consumer's EDR: endpoint {edr['endpoint']} (the provider's data plane) + its token")
            direct = map_service(api, f"http://wml-api.{namespace}.svc:8080/", hosts)
            wait_for(lambda: api_ready(direct), 180, 1.0, "the tenant API pod")
            with Client.through_edc(edr) as client:
                job, state, log, result = _consume(client, work, echo)
            provider.terminate(tp, reason="contract work done")
            echo("provider terminated the transfer → EDC sends the deprovision request")
            gone = wait_namespace_gone(api, namespace)
            final = provider.call("GET", f"/v3/transferprocesses/{tp}")["state"]
            states.append(final)
            echo(f"namespace {namespace} {'is gone' if gone else 'is still there'}; EDC transfer state {final}")
        return Outcome(tenant, namespace, job, state, log, result, edr["endpoint"], states, gone)


def _consume(client: Client, tmp: Path, echo: Callable[[str], None]) -> tuple[str, str, list[str], str]:
    """What the consumer does, all through EDC: upload the input, start, follow the log, download the result."""
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
