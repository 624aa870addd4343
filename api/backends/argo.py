"""Argo Server, in client auth mode: every call carries this instance's ServiceAccount token, so the
Kubernetes RBAC of the tenant namespace decides what it may do.

Argo Server's REST API is called directly, not through Hera's AsyncWorkflowsService: Hera's client validates every
answer into its full Argo schema, whose import costs each tenant API pod about a second of start-up and ~20 MiB
(a new consumer waits for that pod), and whose validation costs CPU on every request. Answers are read into the
few fields the API uses (:mod:`api.core.workflow`). The log stream is newline-delimited JSON; and the create of a job's
Workflow, the one call on the job start path, goes through aiohttp, whose connection pool costs a fraction of
httpx's under parallel starts (httpcore scans every pooled connection on every request: a fifth of the API's CPU
at 20 parallel starts).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import aiohttp
import httpx
from pydantic import ValidationError

from api.core.errors import ArgoConflict, ArgoNotFound, ArgoRejected, ArgoUnavailable
from api.core.workflow import Workflow, WorkflowList, WorkflowTemplate, WorkflowTemplateList
from api.settings import ApiSettings
from templates.labels import LABEL_FINISH, LABEL_WEBHOOK, FinishMark, WebhookMark

M = TypeVar("M", Workflow, WorkflowList, WorkflowTemplate, WorkflowTemplateList)


def _raise_for(status: int, body: bytes, what: str) -> None:
    """Argo Server's answer as one of the errors above (grpc-gateway maps AlreadyExists to 409, NotFound to 404,
    InvalidArgument to 400)."""
    if status < 300:
        return
    if status == 409 or (status >= 400 and b"already exists" in body):
        raise ArgoConflict(f"{what} exists")
    if status == 404:
        raise ArgoNotFound(what)
    if status in (400, 422):
        raise ArgoRejected("the workflow engine rejected the request as invalid")
    raise ArgoUnavailable(f"Argo Server answered {status}")


class Argo:
    def __init__(
        self, settings: ApiSettings, session: httpx.AsyncClient, starts: aiohttp.ClientSession | None = None
    ) -> None:
        self.settings = settings
        self.session = session
        self.starts = starts  # for create(); None: through httpx like the rest
        self.namespace = settings.namespace
        self.base = settings.argo_server_url.rstrip("/")

    def _headers(self) -> dict[str, str]:
        # The token is re-read each time because projected tokens rotate.
        return {"Authorization": f"Bearer {self.settings.argo_bearer()}"}

    async def _call(
        self, method: str, path: str, what: str, params: dict[str, str] | None = None, body: Any = None
    ) -> bytes:
        try:
            response = await self.session.request(
                method, f"{self.base}{path}", params=params, json=body, headers=self._headers()
            )
        except (httpx.HTTPError, OSError) as exc:
            raise ArgoUnavailable(f"Argo Server is unreachable: {type(exc).__name__}") from exc
        _raise_for(response.status_code, response.content, what)
        return response.content

    @staticmethod
    def _read(model: type[M], body: bytes) -> M:
        try:
            return model.model_validate_json(body)
        except ValidationError as exc:  # a proxy's page or a truncated body, not Argo's JSON
            raise ArgoUnavailable(f"Argo Server answered what is not a {model.__name__}") from exc

    async def templates(self, label_selector: str) -> list[WorkflowTemplate]:
        body = await self._call(
            "GET",
            f"/api/v1/workflow-templates/{self.namespace}",
            "workflow templates",
            params={"listOptions.labelSelector": label_selector},
        )
        return list(self._read(WorkflowTemplateList, body).items or [])

    async def template(self, name: str) -> WorkflowTemplate:
        body = await self._call("GET", f"/api/v1/workflow-templates/{self.namespace}/{name}", f"template {name}")
        return self._read(WorkflowTemplate, body)

    async def create(self, manifest: dict[str, Any]) -> Workflow:
        name = manifest["metadata"].get("name", "")
        if self.starts is None:
            body = await self._call("POST", f"/api/v1/workflows/{self.namespace}", name, body={"workflow": manifest})
            return self._read(Workflow, body)
        url = f"{self.base}/api/v1/workflows/{self.namespace}"
        try:
            async with self.starts.post(url, json={"workflow": manifest}, headers=self._headers()) as response:
                status, body = response.status, await response.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise ArgoUnavailable(f"Argo Server is unreachable: {type(exc).__name__}") from exc
        _raise_for(status, body, f"workflow {name}")
        return self._read(Workflow, body)

    async def get(self, name: str) -> Workflow:
        return self._read(Workflow, await self._call("GET", f"/api/v1/workflows/{self.namespace}/{name}", name))

    async def list(self, label_selector: str, limit: int, continue_: str | None) -> WorkflowList:
        # Without a workflow archive, Argo Server returns a `continue` token (an offset) only when asked
        # for the remaining item count, which it takes as this field selector.
        params = {
            "listOptions.labelSelector": label_selector,
            "listOptions.fieldSelector": "ext.showRemainingItemCount=true",
            "listOptions.limit": str(limit),
        }
        if continue_:
            params["listOptions.continue"] = continue_
        body = await self._call("GET", f"/api/v1/workflows/{self.namespace}", "workflows", params=params)
        return self._read(WorkflowList, body)

    async def finished_with_pending_webhook(self) -> Sequence[tuple[str, str]]:
        """(name, uid) of finished jobs whose completion event is not settled yet (only those fields are fetched)."""
        return await self.finished_marked(LABEL_WEBHOOK, WebhookMark.PENDING)

    async def finished_with_pending_finish(self) -> Sequence[tuple[str, str]]:
        """(name, uid) of finished jobs whose end the API has not settled yet (logs, pods, keys)."""
        return await self.finished_marked(LABEL_FINISH, FinishMark.PENDING)

    async def finished_marked(self, label: str, mark: str) -> Sequence[tuple[str, str]]:
        params = {
            "listOptions.labelSelector": f"workflows.argoproj.io/completed=true,{label}={mark}",
            "fields": "items.metadata.name,items.metadata.uid",
        }
        body = await self._call("GET", f"/api/v1/workflows/{self.namespace}", "workflows", params=params)
        items = self._read(WorkflowList, body).items or []
        return sorted((w.metadata.name, w.metadata.uid or "") for w in items if w.metadata.name)

    async def terminate(self, name: str) -> Workflow:
        path = f"/api/v1/workflows/{self.namespace}/{name}/terminate"
        body = await self._call("PUT", path, name, body={"name": name, "namespace": self.namespace})
        return self._read(Workflow, body)

    async def delete(self, name: str) -> None:
        await self._call("DELETE", f"/api/v1/workflows/{self.namespace}/{name}", name)

    async def info(self) -> None:
        await self._call("GET", "/api/v1/info", "info")
