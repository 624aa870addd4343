"""Reading how a tenant API's pods are doing, from its Deployment and Pods as Kubernetes reports them: serving,
rolled out, starting (and the failures Kubernetes names), and how many tenants are starting in the cluster. Pure
reads; the steps in :mod:`provisioner.steps.admission` and :mod:`provisioner.steps.readiness` decide on them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from provisioner.infra.services import Services
from templates.labels import LABEL_MANAGED_BY, LABEL_TENANT, MANAGER
from templates.names import API


def api_serving(svc: Services, namespace: str) -> bool:
    deployment = svc.kube.get("apps/v1", "Deployment", API, namespace)
    status = (deployment or {}).get("status") or {}
    return bool(status.get("availableReplicas") or status.get("readyReplicas"))


def api_rolled_out(svc: Services, namespace: str) -> bool:
    deployment = svc.kube.get("apps/v1", "Deployment", API, namespace)
    return deployment is None or rolled_out(deployment)


def rolled_out(deployment: dict[str, Any]) -> bool:
    """Whether every pod that serves runs the Deployment's current settings (a changed environment rolls them).

    No pod of an older generation left and one pod available is enough: the Service sends requests to available
    pods only, and each re-reads the token set itself, so the endpoint works as soon as the first one answers;
    the second comes a moment later (a new tenant's endpoint then costs one pod's start, not two). During a
    rolling update older pods still serve: that waits until all are replaced. A Deployment that never served has
    nothing to wait for."""
    status = deployment.get("status") or {}
    if not status.get("availableReplicas") and not status.get("readyReplicas"):
        return True
    current = int(status.get("observedGeneration", 0)) >= int(deployment["metadata"].get("generation", 0))
    replicas, updated = int(status.get("replicas", 0)), int(status.get("updatedReplicas", 0))
    return current and replicas == updated and int(status.get("availableReplicas", 0)) >= 1


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c.get("type") == kind), {})


@dataclass(frozen=True)
class ApiStart:
    """How a tenant API's pods are doing, as Kubernetes says it: ``failures`` it names (unschedulable, crashing,
    image missing, the quota refusing a pod) and when the oldest pod that does not serve yet was created."""

    failures: tuple[str, ...]
    waiting_since: datetime | None


def api_start(svc: Services, namespace: str, status: dict[str, Any]) -> ApiStart:
    """Read from the Deployment's ``status`` and its pods."""
    seen: list[str] = []
    oldest: datetime | None = None
    failure = condition(status, "ReplicaFailure")
    if failure.get("status") == "True":  # no pod could even be created (e.g. the tenant's ResourceQuota)
        seen.append(f"{failure.get('reason')}: {failure.get('message', '')}")
    for pod in svc.kube.list("v1", "Pod", namespace, f"app.kubernetes.io/name={API}"):
        pod_status = pod.get("status") or {}
        if condition(pod_status, "Ready").get("status") == "True":
            continue
        created = pod["metadata"].get("creationTimestamp")
        if created:
            made = at(created)
            oldest = made if oldest is None else min(oldest, made)
        scheduled = condition(pod_status, "PodScheduled")
        if scheduled.get("status") == "False":
            seen.append(f"{scheduled.get('reason')}: {scheduled.get('message', '')}")
        for container in pod_status.get("containerStatuses") or []:
            waiting = (container.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") and waiting["reason"] != "ContainerCreating":
                seen.append(f"{waiting['reason']}: {waiting.get('message', '')}")
            ended = (container.get("lastState") or {}).get("terminated") or {}
            if int(container.get("restartCount") or 0) and ended:  # it ran and died: a crash, not a slow start
                seen.append(
                    f"restarted {container['restartCount']}x, last {ended.get('reason')} ({ended.get('exitCode')})"
                )
    return ApiStart(tuple(sorted({s[:200] for s in seen})), oldest)


def tenants_starting(svc: Services, now: datetime) -> set[str]:
    """Namespaces of tenants whose API is starting: made less than ``api_start_timeout_seconds`` ago with no API
    Deployment yet, or with one not yet available and within its progress deadline or one period past it
    (:func:`_starting`). Tenants being torn down, failed ones and those later than that hold no slot, or a few
    broken tenants would stop every new one."""
    managed = f"{LABEL_MANAGED_BY}={MANAGER}"
    deployments = {
        d["metadata"]["namespace"]: d
        for d in svc.kube.list("apps/v1", "Deployment", None, f"app.kubernetes.io/name={API},{managed}")
    }
    timeout = svc.settings.api_start_timeout_seconds
    starting = set()
    for namespace in svc.kube.list("v1", "Namespace", None, f"{managed},{LABEL_TENANT}"):
        meta = namespace["metadata"]
        if (namespace.get("status") or {}).get("phase") == "Terminating" or meta.get("deletionTimestamp"):
            continue
        deployment = deployments.get(meta["name"])
        if deployment is not None:
            if _starting(deployment, now, timeout):
                starting.add(meta["name"])
        elif (now - at(meta["creationTimestamp"])).total_seconds() < timeout:
            starting.add(meta["name"])
    return starting


def at(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _starting(deployment: dict[str, Any], now: datetime, timeout: int) -> bool:
    """Not serving yet, and within its progress deadline or one more such period past it (slow pods on a busy
    node are still waited for then, and still take CPU). Later it holds no slot: a few broken tenants must not
    stop every new one."""
    status = deployment.get("status") or {}
    if status.get("availableReplicas"):
        return False
    progressing = condition(status, "Progressing")
    if progressing.get("reason") != "ProgressDeadlineExceeded":
        return True
    since = progressing.get("lastTransitionTime")
    return since is not None and (now - at(since)).total_seconds() < timeout


API_POLL_FAST_SECONDS = 5.0  # a tenant API this young is looked at every 0.1 s, an older one every 0.25 s


def api_poll_delay(now: datetime, deployment: dict[str, Any] | None) -> float:
    """How soon to look again at a starting API: often while a new consumer may be waiting on it (a pod is
    typically Ready in 1-2 s), less often later, so that a burst of slow starts does not flood Kubernetes."""
    made = ((deployment or {}).get("metadata") or {}).get("creationTimestamp")
    if made and (now - at(made)).total_seconds() < API_POLL_FAST_SECONDS:
        return 0.1
    return 0.25
