"""A job's pods as the tests look at them (Argo labels each with its Workflow's name)."""

from __future__ import annotations

from kubernetes import client as k8s

from devstack.wait import wait_for
from templates.labels import LABEL_FINISH, FinishMark


def job_pods(api: k8s.ApiClient, namespace: str, job: str) -> list[k8s.V1Pod]:
    selector = f"workflows.argoproj.io/workflow={job}"
    return list(k8s.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=selector).items)


def wait_pods_gone(api: k8s.ApiClient, namespace: str, job: str, timeout: float = 120) -> None:
    """Until the API has settled the job's end: its logs stored, then its pods deleted."""
    wait_for(lambda: not job_pods(api, namespace, job), timeout, interval=0.5, what=f"the pods of {job} deleted")


def finish_settled(api: k8s.ApiClient, namespace: str, job: str) -> bool:
    """Whether the API has settled the job's end (its finishing label: logs stored, outputs sealed, cuts noted)."""
    wf = k8s.CustomObjectsApi(api).get_namespaced_custom_object("argoproj.io", "v1alpha1", namespace, "workflows", job)
    return bool(wf["metadata"].get("labels", {}).get(LABEL_FINISH) == FinishMark.DONE)


def wait_settled(api: k8s.ApiClient, namespace: str, job: str, timeout: float = 120) -> None:
    wait_for(lambda: finish_settled(api, namespace, job), timeout, interval=0.5, what=f"the end of {job} settled")
