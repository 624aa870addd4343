"""The little the consumer API asks of the Kubernetes API itself: each job's environment and S3 Secrets, the
labels that settle a job's completion event and its end, and a finished job's pods (their logs, their deletion).

Workflows go through Argo Server; only the job's environment goes to Kubernetes directly, as a Secret the
Workflow owns, so that consumer values never pass through Argo's template engine. The API's ServiceAccount may
create, replace and delete Secrets (never read them), and an admission policy (``argo/base/admission``) limits
it to ``job-*-env`` and ``job-*-s3`` Secrets of its own shape, and its pod deletions to job pods.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel

from api.core.errors import KubeRejected, KubeUnavailable
from api.core.tokens import LiveTokens, parse_scopes
from api.settings import ApiSettings
from templates.labels import ANNOTATION_CUTS, LABEL_FINISH, LABEL_WEBHOOK, FinishMark, WebhookMark

WORKFLOW_LABEL = "workflows.argoproj.io/workflow"  # Argo's label on a Workflow's pods
LOG_CHUNK = 64 * 1024


class JobPod(BaseModel):
    """One pod of a job, as far as reading its log and finishing it need."""

    name: str
    phase: str
    created: str = ""  # RFC 3339: a retried job's pods in the order they ran

    @property
    def done(self) -> bool:
        return self.phase in ("Succeeded", "Failed")


def in_cluster_url() -> str | None:
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT_HTTPS", "443")
    if not host:
        return None
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


class TenantKube:
    def __init__(self, settings: ApiSettings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.settings = settings
        self.base = settings.kube_api_url or in_cluster_url() or "https://kubernetes.default.svc"
        ca = settings.kube_ca_file
        verify: Any = str(ca) if ca is not None and Path(ca).exists() else settings.kube_verify_tls
        self.http = httpx.AsyncClient(
            base_url=self.base, verify=verify, timeout=httpx.Timeout(15.0, connect=5.0), transport=transport
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    def _secrets(self, name: str = "") -> str:
        path = f"/api/v1/namespaces/{self.settings.namespace}/secrets"
        return f"{path}/{name}" if name else path

    async def _call(self, method: str, url: str, body: Any = None, content_type: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.settings.argo_bearer()}"}
        if content_type:
            headers["Content-Type"] = content_type
        try:
            response = await self.http.request(method, url, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise KubeUnavailable(f"Kubernetes API unreachable: {type(exc).__name__}") from exc
        if response.status_code >= 500 or response.status_code == 429:
            raise KubeUnavailable(f"Kubernetes API answered {response.status_code}")
        return response

    async def create_secret(self, manifest: dict[str, Any]) -> bool:
        """Create the Secret; False when one of that name exists already (an earlier attempt of the same job)."""
        name = manifest["metadata"]["name"]
        response = await self._call("POST", self._secrets(), manifest)
        if response.status_code == 409:
            return False
        if not response.is_success:
            raise KubeRejected(f"secret {name}: {response.status_code} {_reason(response)}")
        return True

    async def replace_secret(self, manifest: dict[str, Any]) -> None:
        name = manifest["metadata"]["name"]
        response = await self._call("PUT", self._secrets(name), manifest)
        if not response.is_success:
            raise KubeRejected(f"secret {name}: {response.status_code} {_reason(response)}")

    async def own_secret(self, name: str, owner: dict[str, Any]) -> None:
        """Make ``owner`` (a Workflow) the Secret's owner: it goes when the Workflow goes."""
        patch = {"metadata": {"ownerReferences": [owner]}}
        response = await self._call("PATCH", self._secrets(name), patch, "application/merge-patch+json")
        if not response.is_success and response.status_code != 404:
            raise KubeRejected(f"secret {name}: {response.status_code} {_reason(response)}")

    async def delete_secret(self, name: str) -> None:
        response = await self._call("DELETE", self._secrets(name))
        if not response.is_success and response.status_code != 404:
            raise KubeRejected(f"secret {name}: {response.status_code} {_reason(response)}")

    async def job_names(self) -> set[str]:
        """Names of every Workflow of the tenant (finished or not), from the Kubernetes API."""
        return await self._workflow_names(None)

    async def running_jobs(self) -> set[str]:
        """Names of the tenant's Workflows not yet completed, read from the Kubernetes API (a quorum read: Argo
        Server answers lists from its informer's cache, which can miss a Workflow created a moment ago)."""
        return await self._workflow_names("workflows.argoproj.io/completed!=true")

    async def _workflow_names(self, selector: str | None) -> set[str]:
        path = f"/apis/argoproj.io/v1alpha1/namespaces/{self.settings.namespace}/workflows"
        headers = {
            "Authorization": f"Bearer {self.settings.argo_bearer()}",
            # names only: no specs or statuses over the wire
            "Accept": "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json",
        }
        params = {"labelSelector": selector} if selector else {}
        try:
            response = await self.http.get(path, params=params, headers=headers)
        except httpx.HTTPError as exc:
            raise KubeUnavailable(f"Kubernetes API unreachable: {type(exc).__name__}") from exc
        if response.status_code >= 500 or response.status_code == 429:
            raise KubeUnavailable(f"Kubernetes API answered {response.status_code}")
        if not response.is_success:
            raise KubeRejected(f"workflows: {response.status_code} {_reason(response)}")
        return {str(item["metadata"]["name"]) for item in response.json().get("items") or []}

    def _leases(self, name: str = "") -> str:
        path = f"/apis/coordination.k8s.io/v1/namespaces/{self.settings.namespace}/leases"
        return f"{path}/{name}" if name else path

    async def create_lease(self, lease: dict[str, Any]) -> str | None:
        """Create the Lease; its resourceVersion, or None when one of that name exists."""
        response = await self._call("POST", self._leases(), lease)
        if response.status_code == 409:
            return None
        if not response.is_success:
            raise KubeRejected(f"lease: {response.status_code} {_reason(response)}")
        return str(response.json()["metadata"]["resourceVersion"])

    async def get_lease(self, name: str) -> dict[str, Any] | None:
        response = await self._call("GET", self._leases(name))
        if response.status_code == 404:
            return None
        if not response.is_success:
            raise KubeRejected(f"lease {name}: {response.status_code} {_reason(response)}")
        return dict(response.json())

    async def replace_lease(self, name: str, lease: dict[str, Any]) -> str | None:
        """Replace the Lease if it still has the resourceVersion ``lease`` names; None when someone was faster."""
        response = await self._call("PUT", self._leases(name), lease)
        if response.status_code in (404, 409):
            return None
        if not response.is_success:
            raise KubeRejected(f"lease {name}: {response.status_code} {_reason(response)}")
        return str(response.json()["metadata"]["resourceVersion"])

    async def delete_lease(self, name: str, version: str) -> None:
        """Delete the Lease only while it is still the one this caller wrote (a precondition on its version)."""
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"resourceVersion": version}}
        response = await self._call("DELETE", self._leases(name), body)
        if not response.is_success and response.status_code not in (404, 409):
            raise KubeRejected(f"lease {name}: {response.status_code} {_reason(response)}")

    async def settle_webhook(self, job: str) -> None:
        """Mark a job's completion event settled, so the delivery loop stops listing it (a label, nothing else)."""
        path = f"/apis/argoproj.io/v1alpha1/namespaces/{self.settings.namespace}/workflows/{job}"
        patch = {"metadata": {"labels": {LABEL_WEBHOOK: str(WebhookMark.SETTLED)}}}
        response = await self._call("PATCH", path, patch, "application/merge-patch+json")
        if not response.is_success and response.status_code != 404:
            raise KubeRejected(f"workflow {job}: {response.status_code} {_reason(response)}")

    async def settle_finish(self, job: str, cuts: dict[str, str] | None = None) -> None:
        """Mark a finished job settled (logs stored, pods gone, keys revoked, outputs sealed), with the limits it
        hit (``cuts``): the finishing loop stops listing it."""
        path = f"/apis/argoproj.io/v1alpha1/namespaces/{self.settings.namespace}/workflows/{job}"
        patch: dict[str, Any] = {"metadata": {"labels": {LABEL_FINISH: str(FinishMark.DONE)}}}
        if cuts:
            patch["metadata"]["annotations"] = {ANNOTATION_CUTS: json.dumps(cuts, sort_keys=True)}
        response = await self._call("PATCH", path, patch, "application/merge-patch+json")
        if not response.is_success and response.status_code != 404:
            raise KubeRejected(f"workflow {job}: {response.status_code} {_reason(response)}")

    def _workflow(self, job: str) -> str:
        return f"/apis/argoproj.io/v1alpha1/namespaces/{self.settings.namespace}/workflows/{job}"

    async def workflow_annotations(self, job: str) -> tuple[dict[str, str], str] | None:
        """A Workflow's annotations and the resourceVersion they were read at; None when it is gone."""
        response = await self._call("GET", self._workflow(job))
        if response.status_code == 404:
            return None
        if not response.is_success:
            raise KubeRejected(f"workflow {job}: {response.status_code} {_reason(response)}")
        meta = response.json().get("metadata") or {}
        return {str(k): str(v) for k, v in (meta.get("annotations") or {}).items()}, str(meta["resourceVersion"])

    async def annotate_workflow(self, job: str, changes: dict[str, str | None], version: str | None = None) -> bool:
        """Set (or, with None, remove) annotations of a Workflow; with ``version``, only if it is still at that
        resourceVersion. False when it changed meanwhile or is gone."""
        meta: dict[str, Any] = {"annotations": changes}
        if version:
            meta["resourceVersion"] = version
        response = await self._call("PATCH", self._workflow(job), {"metadata": meta}, "application/merge-patch+json")
        if response.status_code in (404, 409):
            return False
        if not response.is_success:
            raise KubeRejected(f"workflow {job}: {response.status_code} {_reason(response)}")
        return True

    def _pods(self, name: str = "") -> str:
        path = f"/api/v1/namespaces/{self.settings.namespace}/pods"
        return f"{path}/{name}" if name else path

    async def job_pods(self, job: str) -> list[JobPod]:
        """The pods Argo made for ``job`` (a retried job has several)."""
        response = await self._call("GET", self._pods() + f"?labelSelector={WORKFLOW_LABEL}%3D{job}")
        if not response.is_success:
            raise KubeRejected(f"pods of {job}: {response.status_code} {_reason(response)}")
        pods = [
            JobPod(
                name=item["metadata"]["name"],
                phase=(item.get("status") or {}).get("phase", "Unknown"),
                created=item["metadata"].get("creationTimestamp") or "",
            )
            for item in response.json().get("items") or []
        ]
        return sorted(pods, key=lambda pod: (pod.created, pod.name))

    async def container_log(self, pod: str, container: str, limit: int, follow: bool = False) -> AsyncIterator[bytes]:
        """The kubelet's copy of a container's log (the container runtime wrote it: nothing in the pod can swap
        it for another file), at most ``limit`` bytes, in chunks; ``follow``: until the container ends."""
        headers = {"Authorization": f"Bearer {self.settings.argo_bearer()}"}
        params = {"container": container, "limitBytes": str(limit)}
        if follow:
            params["follow"] = "true"
        timeout = httpx.Timeout(self.http.timeout.connect, read=None) if follow else self.http.timeout
        url = self._pods(pod) + "/log"
        try:
            async with self.http.stream("GET", url, params=params, headers=headers, timeout=timeout) as response:
                if response.status_code >= 500 or response.status_code == 429:
                    raise KubeUnavailable(f"Kubernetes API answered {response.status_code} for a log")
                if not response.is_success:
                    await response.aread()
                    raise KubeRejected(f"log of {pod}: {response.status_code} {_reason(response)}")
                async for chunk in response.aiter_bytes(LOG_CHUNK):
                    yield chunk
        except httpx.HTTPError as exc:
            raise KubeUnavailable(f"Kubernetes API unreachable: {type(exc).__name__}") from exc

    async def delete_pod(self, name: str) -> None:
        response = await self._call("DELETE", self._pods(name))
        if not response.is_success and response.status_code != 404:
            raise KubeRejected(f"pod {name}: {response.status_code} {_reason(response)}")

    async def token_digests(self) -> LiveTokens | None:
        """The live token digests, and the assets each covers, from the provisioner's Secret; None when it is
        absent (the seed stays)."""
        response = await self._call("GET", self._secrets(self.settings.token_secret))
        if response.status_code == 404:
            return None
        if not response.is_success:
            raise KubeRejected(f"secret {self.settings.token_secret}: {response.status_code} {_reason(response)}")
        data = response.json().get("data") or {}
        raw = data.get("sha256", "")
        text = base64.b64decode(raw).decode() if raw else ""
        digests = tuple(d.strip().lower() for d in text.split(",") if d.strip())
        raw_scopes = data.get("scopes", "")
        return LiveTokens(digests, parse_scopes(base64.b64decode(raw_scopes).decode() if raw_scopes else ""))


def _reason(response: httpx.Response) -> str:
    try:
        return str(response.json().get("message", ""))[:300]
    except ValueError:
        return response.text[:300]
