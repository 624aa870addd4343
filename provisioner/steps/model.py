"""What a run of steps works from and hands on: the tenant's :class:`Snapshot`, what steps make for later steps
(:class:`Made`), the :class:`StepContext` a step receives, and the :class:`Step` record of the registry.

Steps hand each other typed products instead of filling a shared spec: a step says which products it ``needs``
and returns what it makes, so the run plan (:mod:`provisioner.core.plan`) can tell, for any subset of steps, which
earlier steps must run too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from provisioner.infra.services import Services
from provisioner.manifests import TenantSpec
from templates import WorkflowAsset
from templates.names import exec_s3_user


@dataclass(frozen=True)
class Snapshot:
    """What one run of a tenant works from, read in one transaction."""

    tenant_id: str
    namespace: str
    consumer_id: str
    s3_user: str  # the API's MinIO user
    grant_ids: tuple[int, ...]  # holding and ending grants
    active_grant_ids: tuple[int, ...]  # whose tokens open the API
    asset_names: tuple[str, ...]
    contract_id: str
    grant_states: tuple[tuple[int, str], ...] = ()  # every grant of the tenant as the run found it
    grant_assets: tuple[tuple[int, str], ...] = ()  # each active grant's asset: what its token opens

    @property
    def exec_user(self) -> str:
        """The executor's MinIO user (job inputs read, outputs and logs written; nothing else)."""
        return exec_s3_user(self.tenant_id)


class Product(StrEnum):
    """What a step makes for later steps of the same run."""

    S3_KEYS = "s3_keys"  # the two MinIO users' secret keys, as their Secrets hold them
    GRANTS = "grants"  # the active grants' token digests, the contract and the assets they cover


@dataclass(frozen=True)
class S3Keys:
    api_secret_key: str
    exec_secret_key: str
    # A key was lost behind our back and made anew: it reaches the MinIO users and the API's pods only through
    # steps a run of grants only skips, so the run must go on as a whole pass.
    renewed: bool = False


@dataclass(frozen=True)
class GrantSet:
    token_digests: tuple[str, ...]
    contract_id: str
    assets: tuple[WorkflowAsset, ...]
    token_scopes: tuple[tuple[str, str], ...] = ()  # (digest, asset) per active grant


@dataclass(frozen=True)
class Made:
    """Products of the steps run so far in this run."""

    s3_keys: S3Keys | None = None
    grants: GrantSet | None = None

    def with_(self, other: Made | None) -> Made:
        if other is None:
            return self
        return Made(s3_keys=other.s3_keys or self.s3_keys, grants=other.grants or self.grants)


@dataclass
class StepContext:
    svc: Services
    snap: Snapshot
    made: Made = field(default_factory=Made)

    @property
    def spec(self) -> TenantSpec:
        """The tenant's objects' inputs, from the snapshot and what earlier steps made."""
        keys, grants = self.made.s3_keys, self.made.grants
        return TenantSpec(
            tenant=self.snap.tenant_id,
            namespace=self.snap.namespace,
            token_digests=grants.token_digests if grants else (),
            s3_access_key=self.snap.s3_user if keys else "",
            s3_secret_key=keys.api_secret_key if keys else "",
            exec_access_key=self.snap.exec_user if keys else "",
            exec_secret_key=keys.exec_secret_key if keys else "",
            contract_id=grants.contract_id if grants else "",
            token_scopes=grants.token_scopes if grants else (),
            assets=list(grants.assets) if grants else [],
        )


StepFn = Callable[[StepContext], Made | None]


@dataclass(frozen=True)
class Step:
    name: str
    run: StepFn
    needs: frozenset[Product] = frozenset()
    makes: frozenset[Product] = frozenset()
    # What this step applies depends on the tenant's grants (tokens, their revocation, readiness). A run in which
    # only grants changed, soon after a whole pass, runs just these and what they need (core.plan).
    on_grants: bool = False


class StepFailed(Exception):
    """A step's exception, wrapped (never mutated) with the step's name and its place in the list."""

    def __init__(self, step: str, cause: Exception, index: int = 0) -> None:
        super().__init__(f"{step}: {type(cause).__name__}: {cause}")
        self.step = step
        self.cause = cause
        self.index = index
