"""The tenant's assets, read from the WorkflowTemplates registered in its namespace (no second catalogue)."""

from __future__ import annotations

import time

from hera.workflows import models as m

from api.argo import Argo, ArgoNotFound
from templates import WorkflowAsset, parse_text, template_name
from templates.compiler import ANNOTATION_ASSET, LABEL_MANAGED_BY, MANAGER


def asset_of(template: m.WorkflowTemplate) -> WorkflowAsset | None:
    annotations = template.metadata.annotations or {}
    spec = annotations.get(ANNOTATION_ASSET)
    if spec is None:
        return None
    return parse_text(spec, f"WorkflowTemplate {template.metadata.name}")


class Catalogue:
    """Assets by name. A looked-up asset is kept for ``ttl`` seconds: starting a job then costs no
    template read, and a template the provisioner changes is seen within that time."""

    def __init__(self, argo: Argo, ttl: float = 5.0) -> None:
        self.argo = argo
        self.ttl = ttl
        self._cache: dict[str, tuple[float, WorkflowAsset | None]] = {}

    async def list(self) -> list[WorkflowAsset]:
        templates = await self.argo.templates(f"{LABEL_MANAGED_BY}={MANAGER}")
        assets = [a for a in (asset_of(t) for t in templates) if a is not None]
        return sorted(assets, key=lambda a: a.name)

    async def get(self, name: str) -> WorkflowAsset | None:
        now = time.monotonic()
        cached = self._cache.get(name)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            template = await self.argo.template(template_name(name))
        except ArgoNotFound:
            return None
        asset = asset_of(template)
        found = asset if asset is not None and asset.name == name else None
        if found is not None:
            self._cache[name] = (now + self.ttl, found)
        return found
