"""Argo Server, in client auth mode: every call carries this instance's ServiceAccount token, so the
Kubernetes RBAC of the tenant namespace decides what it may do.

Hera's AsyncWorkflowsService is used where it works. Three endpoints are called directly: the log stream is
newline-delimited JSON (Hera parses it as one entry); artifact bodies are bytes; and the create of a job's Workflow,
the one call on the job start path, goes through aiohttp, whose connection pool costs a fraction of httpx's under
parallel starts (httpcore scans every pooled connection on every request: a fifth of the API's CPU at 20 parallel
starts).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any, cast

import aiohttp
import httpx
from hera.exceptions import BadRequest, HeraException, NotFound
from hera.workflows import AsyncWorkflowsService
from hera.workflows import models as m

from api.settings import ApiSettings
from templates.compiler import LABEL_WEBHOOK, WebhookMark


class ArgoUnavailable(RuntimeError):
    """Argo Server could not be reached or failed."""


class ArgoNotFound(LookupError):
    pass


class ArgoConflict(RuntimeError):
    pass


class ArgoRejected(ValueError):
    """Argo Server refused the request as malformed (e.g. a stale page token)."""


class Argo:
    def __init__(
        self, settings: ApiSettings, session: httpx.AsyncClient, starts: aiohttp.ClientSession | None = None
    ) -> None:
        self.settings = settings
        self.session = session
        self.starts = starts  # for create(); None: through Hera like the rest
        self.namespace = settings.namespace

    def _service(self) -> AsyncWorkflowsService:
        # Cheap to build; the token is re-read each time because projected tokens rotate.
        return AsyncWorkflowsService(
            host=self.settings.argo_server_url,
            token=self.settings.argo_bearer(),
            namespace=self.namespace,
            verify_ssl=self.settings.argo_verify_tls,
            session=self.session,
        )

    async def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return await getattr(self._service(), name)(*args, **kwargs)
        except NotFound as exc:
            raise ArgoNotFound(str(exc)) from exc
        except BadRequest as exc:
            raise ArgoRejected("the workflow engine rejected the request as invalid") from exc
        except HeraException as exc:
            status = getattr(exc, "status_code", 500)
            if status == 409 or "already exists" in str(exc):
                raise ArgoConflict(str(exc)) from exc
            raise ArgoUnavailable(f"Argo Server answered {status}") from exc
        except (httpx.HTTPError, OSError) as exc:
            raise ArgoUnavailable(f"Argo Server is unreachable: {type(exc).__name__}") from exc

    async def templates(self, label_selector: str) -> list[m.WorkflowTemplate]:
        result = await self._call("list_workflow_templates", label_selector=label_selector)
        return list(result.items or [])

    async def template(self, name: str) -> m.WorkflowTemplate:
        return cast(m.WorkflowTemplate, await self._call("get_workflow_template", name))

    async def create(self, manifest: dict[str, Any]) -> m.Workflow:
        if self.starts is None:
            request = m.WorkflowCreateRequest(workflow=m.Workflow(**manifest))
            return cast(m.Workflow, await self._call("create_workflow", request))
        url = f"{self.settings.argo_server_url.rstrip('/')}/api/v1/workflows/{self.namespace}"
        headers = {"Authorization": f"Bearer {self.settings.argo_bearer()}"}
        try:
            async with self.starts.post(url, json={"workflow": manifest}, headers=headers) as response:
                status, body = response.status, await response.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise ArgoUnavailable(f"Argo Server is unreachable: {type(exc).__name__}") from exc
        if status == 409 or (status >= 400 and b"already exists" in body):
            raise ArgoConflict(f"workflow {manifest['metadata'].get('name')} exists")
        if status == 404:
            raise ArgoNotFound(manifest["metadata"].get("name", ""))
        if status in (400, 422):
            raise ArgoRejected("the workflow engine rejected the request as invalid")
        if status >= 300:
            raise ArgoUnavailable(f"Argo Server answered {status}")
        return m.Workflow.model_validate_json(body)

    async def get(self, name: str) -> m.Workflow:
        return cast(m.Workflow, await self._call("get_workflow", name))

    async def list(self, label_selector: str, limit: int, continue_: str | None) -> m.WorkflowList:
        # Without a workflow archive, Argo Server returns a `continue` token (an offset) only when asked
        # for the remaining item count, which it takes as this field selector.
        result = await self._call(
            "list_workflows",
            label_selector=label_selector,
            field_selector="ext.showRemainingItemCount=true",
            limit=str(limit),
            continue_=continue_ or None,
        )
        return cast(m.WorkflowList, result)

    async def finished_with_pending_webhook(self) -> Sequence[tuple[str, str]]:
        """(name, uid) of finished jobs whose completion event is not settled yet (only those fields are fetched)."""
        result = await self._call(
            "list_workflows",
            label_selector=f"workflows.argoproj.io/completed=true,{LABEL_WEBHOOK}={WebhookMark.PENDING}",
            fields="items.metadata.name,items.metadata.uid",
        )
        return sorted((w.metadata.name, w.metadata.uid or "") for w in result.items or [] if w.metadata.name)

    async def terminate(self, name: str) -> m.Workflow:
        request = m.WorkflowTerminateRequest(name=name)
        return cast(m.Workflow, await self._call("terminate_workflow", name, request))

    async def delete(self, name: str) -> None:
        await self._call("delete_workflow", name)

    async def info(self) -> None:
        await self._call("get_info")

    async def log_lines(self, name: str, follow: bool) -> AsyncIterator[str]:
        """The worker's log, live, as lines (direct call: the endpoint streams NDJSON)."""
        url = f"{self.settings.argo_server_url.rstrip('/')}/api/v1/workflows/{self.namespace}/{name}/log"
        params = {"logOptions.container": "main", "logOptions.follow": "true" if follow else "false"}
        headers = {"Authorization": f"Bearer {self.settings.argo_bearer()}"}
        try:
            async with self.session.stream("GET", url, params=params, headers=headers, timeout=None) as resp:
                if resp.status_code == 404:
                    raise ArgoNotFound(name)
                if resp.status_code >= 400:
                    raise ArgoUnavailable(f"Argo Server answered {resp.status_code} for logs")
                async for line in resp.aiter_lines():
                    if not line.strip():
                        continue
                    entry = json.loads(line)
                    if "error" in entry:
                        raise ArgoUnavailable(f"log stream failed: {entry['error'].get('message', '')}")
                    content = entry.get("result", {}).get("content")
                    if content is not None:
                        yield content
        except httpx.HTTPError as exc:
            raise ArgoUnavailable(f"Argo Server is unreachable: {type(exc).__name__}") from exc
