"""A tenant API pod as the provisioner makes it (its Deployment, image, environment, Role, quota and policies):
the time from creating the Deployment to the pod being Ready, and its resident memory when idle.

Goals (issue #15): ready ≤ 3 s, idle RSS ≤ 80 MiB. The pod's processes run on this host, so the RSS is read from
``/proc`` (the process whose environment names the tenant). ``python -m tests.bench api-pod``.
"""

from __future__ import annotations

import secrets
import statistics
import time
import uuid
from pathlib import Path

from kubernetes import client as k8s

from devstack.stack import host, kube
from devstack.stack.app_image import ensure_app_image
from devstack.stack.launcher import ensure_stack
from provisioner import manifests
from provisioner.infra.s3users import S3Admin
from templates.names import API
from tests.api.tenant import tenant_spec
from tests.provisioner.helpers import stack_settings

ROUNDS = 3
IDLE_SECONDS = 10
GOAL_READY_S = 3.0
GOAL_RSS_MIB = 80.0


def _pids_of(tenant: str) -> list[int]:
    needle = f"WML_API_TENANT={tenant}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _one(stack: object, image: str) -> tuple[float, float]:
    settings = stack_settings(stack, "sqlite://", "http://unused", api_image=image, api_replicas=1)  # type: ignore[arg-type]
    tenant = f"t-pod-{uuid.uuid4().hex[:6]}"
    token = secrets.token_urlsafe(32)
    spec = tenant_spec(settings, tenant, token)
    api = kube.api_client(stack.kubeconfig)  # type: ignore[attr-defined]
    storage = S3Admin(settings)
    storage.ensure_user(spec.s3_access_key, spec.s3_secret_key, settings.s3_prefix_for(tenant))
    dyn = kube.dynamic(api)
    core = k8s.CoreV1Api(api)
    try:
        kube.apply(
            dyn,
            [
                manifests.namespace(settings, spec),
                *manifests.rbac(spec),
                *manifests.quota(settings, spec),
                *manifests.network_policies(settings, spec),
                *manifests.config_objects(settings, spec),
                *manifests.workflow_templates(settings, spec),
            ],
        )
        started = time.monotonic()
        kube.apply(dyn, manifests.api_objects(settings, spec))
        deadline = started + 300
        while time.monotonic() < deadline:
            pods = core.list_namespaced_pod(spec.namespace, label_selector=f"app.kubernetes.io/name={API}")
            if any(c.type == "Ready" and c.status == "True" for p in pods.items for c in (p.status.conditions or [])):
                break
            time.sleep(0.05)
        else:
            raise TimeoutError(f"the API pod of {tenant} did not become ready")
        ready = time.monotonic() - started
        time.sleep(IDLE_SECONDS)
        pids = _pids_of(tenant)
        # The largest of its processes with their children: the whole container (uvicorn runs one process).
        rss = max((host.rss_mib(pid) for pid in pids), default=0.0)
        return ready, rss
    finally:
        core.delete_namespace(spec.namespace, propagation_policy="Background")
        storage.remove_user(spec.s3_access_key)


def run() -> dict[str, float]:
    stack = ensure_stack()
    image = ensure_app_image()
    results = [_one(stack, image) for _ in range(ROUNDS)]
    ready = statistics.median(r[0] for r in results)
    rss = statistics.median(r[1] for r in results)
    print(
        f"tenant API pod: Deployment created -> Ready median {ready:.2f} s over {ROUNDS} "
        f"({', '.join(f'{r[0]:.2f}' for r in results)})"
        f"   (goal ≤ {GOAL_READY_S:.0f} s): ratio {ready / GOAL_READY_S:.2f}"
    )
    print(
        f"tenant API pod: idle RSS median {rss:.1f} MiB ({', '.join(f'{r[1]:.1f}' for r in results)})"
        f"   (goal ≤ {GOAL_RSS_MIB:.0f} MiB): ratio {rss / GOAL_RSS_MIB:.2f}"
    )
    return {"ready_s": ready, "idle_rss_mib": rss}
