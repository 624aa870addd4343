"""The tenant this process serves, as every service operation gets it: its settings and its backends, built once
per process in the app's lifespan (:mod:`api.app`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from api.backends.argo import Argo
from api.backends.kube import TenantKube
from api.backends.s3 import ObjectStore
from api.backends.startlock import StartLock
from api.core.errors import not_found
from api.services.catalogue import Catalogue
from api.services.outputs import SealOnce
from api.services.webhooks.targets import TargetPolicy
from api.settings import ApiSettings
from templates import WorkflowAsset


@dataclass(frozen=True)
class TenantContext:
    settings: ApiSettings
    storage: ObjectStore
    argo: Argo
    catalogue: Catalogue
    kube: TenantKube
    webhook_policy: TargetPolicy
    start_lock: StartLock  # quota count + create as one step
    sealing: SealOnce = field(default_factory=SealOnce)  # one sealing per job, whatever the readers

    async def asset(self, name: str) -> WorkflowAsset:
        asset = await self.catalogue.get(name)
        if asset is None:
            raise not_found(f"asset {name!r}")
        return asset
