"""The tenant's assets, read from the WorkflowTemplates registered in its namespace (no second catalogue)."""

from __future__ import annotations

import asyncio
import time

from api.backends.argo import Argo
from api.core import workflow as m
from api.core.errors import ArgoNotFound
from templates import WorkflowAsset, parse_text, template_name
from templates.labels import ANNOTATION_ASSET, LABEL_MANAGED_BY, MANAGER


def asset_of(template: m.WorkflowTemplate) -> WorkflowAsset | None:
    annotations = template.metadata.annotations or {}
    spec = annotations.get(ANNOTATION_ASSET)
    if spec is None:
        return None
    return parse_text(spec, f"WorkflowTemplate {template.metadata.name}")


class Catalogue:
    """Assets by name. A looked-up asset is served from memory: after ``ttl`` seconds the next lookup still gets it at
    once and one read of its template (never one per request, however many arrive together) refreshes it, so a job
    start costs no template read and a template the provisioner changes is seen within about ``ttl``."""

    def __init__(self, argo: Argo, ttl: float = 5.0) -> None:
        self.argo = argo
        self.ttl = ttl
        self._cache: dict[str, tuple[float, WorkflowAsset]] = {}
        self._reads: dict[str, asyncio.Task[WorkflowAsset | None]] = {}

    async def list(self) -> list[WorkflowAsset]:
        templates = await self.argo.templates(f"{LABEL_MANAGED_BY}={MANAGER}")
        assets = [a for a in (asset_of(t) for t in templates) if a is not None]
        return sorted(assets, key=lambda a: a.name)

    async def get(self, name: str) -> WorkflowAsset | None:
        cached = self._cache.get(name)
        if cached is None:
            return await asyncio.shield(self._read(name))
        if cached[0] <= time.monotonic():
            self._read(name)  # refresh in the background; this lookup gets the known asset
        return cached[1]

    def _read(self, name: str) -> asyncio.Task[WorkflowAsset | None]:
        """The one read of ``name``'s template in flight, started if there is none."""
        task = self._reads.get(name)
        if task is None:
            task = asyncio.create_task(self._fetch(name))
            self._reads[name] = task
            task.add_done_callback(lambda done: self._settled(name, done))
        return task

    def _settled(self, name: str, task: asyncio.Task[WorkflowAsset | None]) -> None:
        self._reads.pop(name, None)
        if not task.cancelled():
            task.exception()  # retrieved here: a failed background refresh keeps serving the known asset

    async def _fetch(self, name: str) -> WorkflowAsset | None:
        try:
            template = await self.argo.template(template_name(name))
        except ArgoNotFound:
            self._cache.pop(name, None)  # withdrawn: no longer served
            return None
        asset = asset_of(template)
        found = asset if asset is not None and asset.name == name else None
        if found is None:
            self._cache.pop(name, None)
        else:
            self._cache[name] = (time.monotonic() + self.ttl, found)
        return found
