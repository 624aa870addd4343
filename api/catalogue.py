"""The tenant's assets, read from the WorkflowTemplates registered in its namespace (no second catalogue)."""

from __future__ import annotations

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
    def __init__(self, argo: Argo) -> None:
        self.argo = argo

    async def list(self) -> list[WorkflowAsset]:
        templates = await self.argo.templates(f"{LABEL_MANAGED_BY}={MANAGER}")
        assets = [a for a in (asset_of(t) for t in templates) if a is not None]
        return sorted(assets, key=lambda a: a.name)

    async def get(self, name: str) -> WorkflowAsset | None:
        try:
            template = await self.argo.template(template_name(name))
        except ArgoNotFound:
            return None
        asset = asset_of(template)
        return asset if asset is not None and asset.name == name else None
