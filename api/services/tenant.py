"""The tenant this process serves, as every service operation gets it: its settings and its backends, built once
per process in the app's lifespan (:mod:`api.app`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace

from api.backends.argo import Argo
from api.backends.kube import TenantKube
from api.backends.s3 import ObjectStore
from api.backends.startlock import StartLock
from api.core.errors import HTTPProblem, not_found
from api.services.catalogue import Catalogue
from api.services.jobkeys import JobKeys
from api.services.ledger import StorageLedger
from api.services.outputs import SealOnce
from api.services.webhooks.targets import TargetPolicy
from api.settings import ApiSettings
from templates import WorkflowAsset

FOLLOWS_MAX = 64  # logs followed at once per API process: each holds one of the Kubernetes client's 100 connections


@dataclass(frozen=True)
class TenantContext:
    settings: ApiSettings
    storage: ObjectStore
    argo: Argo
    catalogue: Catalogue
    kube: TenantKube
    webhook_policy: TargetPolicy
    start_lock: StartLock  # quota count + create as one step
    job_keys: JobKeys  # each job's own S3 keys
    sealing: SealOnce = field(default_factory=SealOnce)  # one sealing per job, whatever the readers
    ledger: StorageLedger = field(default_factory=StorageLedger)  # the storage quota with writes under way
    follows: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(FOLLOWS_MAX))
    # The assets the request's token covers (its grant's contract); None: every asset of the tenant.
    allowed: frozenset[str] | None = None

    def scoped(self, allowed: frozenset[str] | None) -> TenantContext:
        """This tenant as one token sees it (a copy per request; the clients are shared)."""
        return replace(self, allowed=allowed)

    def allows(self, asset: str) -> bool:
        return self.allowed is None or asset in self.allowed

    def require(self, asset: str) -> None:
        """403 for an asset the token's contract does not cover (it may well exist: its name is no secret)."""
        if not self.allows(asset):
            raise HTTPProblem(403, "Forbidden", f"this token's contract does not cover asset {asset!r}")

    async def asset(self, name: str) -> WorkflowAsset:
        """The tenant's asset ``name``: 404 when the tenant has none of that name, 403 when another of its contracts
        covers it (both are this consumer's own assets: the difference tells no one else anything)."""
        asset = await self.catalogue.get(name)
        if asset is None:
            raise not_found(f"asset {name!r}")
        self.require(name)
        return asset
