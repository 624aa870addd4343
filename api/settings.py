"""Settings of one consumer API instance (one tenant), from ``WML_API_*`` environment variables.

The provisioner sets exactly these on the tenant's API Deployment (ConfigMap + Secret).
"""

from __future__ import annotations

from enum import StrEnum
from functools import cached_property
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from templates.keys import KeyLayout

SA_TOKEN_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


class StartLockMode(StrEnum):
    """How job starts are serialised (count + create), so that the concurrent-job quota holds exactly."""

    PROCESS = "process"  # one replica: a lock in this process
    LEASE = "lease"  # several replicas: a Kubernetes Lease in the tenant namespace as well


class ApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WML_API_", frozen=True)

    tenant: str = Field(description="Tenant id (label value).")
    namespace: str = Field(description="Tenant namespace: its WorkflowTemplates are the asset catalogue.")
    contract_id: str = ""
    token_sha256: SecretStr = Field(
        description="hex sha256 of each valid bearer token (one per grant), comma-separated; tokens are never "
        "stored. The initial set: the Secret `token_secret` replaces it while it can be read."
    )
    token_scopes: SecretStr = Field(
        default=SecretStr(""),
        description="JSON object: each digest's asset names (the assets its grant's contract covers). The initial "
        "scopes, replaced with the digests from `token_secret`; empty: every token covers every asset.",
    )
    token_secret: str = Field(
        default="wml-api-tokens",
        description="Secret (key `sha256`) with the live digests, re-read on an unknown token and every "
        "`token_refresh_seconds`; empty: only `token_sha256` counts.",
    )
    token_refresh_seconds: float = Field(default=1.0, gt=0, description="Bound on a revoked token's life here.")

    s3_endpoint_url: str = Field(description="S3 endpoint as this process reaches it, e.g. http://10.88.0.1:9000.")
    s3_access_key: SecretStr
    s3_secret_key: SecretStr
    exec_s3_access_key: SecretStr = Field(
        default=SecretStr(""), description="The executor user's keys: each job's own are minted from them (STS)."
    )
    exec_s3_secret_key: SecretStr = Field(default=SecretStr(""))
    s3_bucket: str = "workflows"
    s3_prefix: str = Field(description="Tenant prefix, e.g. tenants/t-3f9a (no slashes at the ends).")
    s3_region: str | None = None
    s3_public_url: str | None = Field(
        default=None,
        description="The object store as consumers reach it (e.g. https://s3.example.com). Set: downloads of at "
        "least `presign_min_bytes` are answered with a 307 to a presigned URL of that one object, valid "
        "`presign_seconds`, so the bytes do not pass through this API. Unset: every download streams through it.",
    )
    presign_min_bytes: int = Field(default=8 * 1024**2, ge=0)
    presign_seconds: int = Field(default=300, ge=1, le=3600)

    argo_server_url: str = Field(description="Argo Server base URL, e.g. http://10.88.0.1:2746.")
    argo_token: SecretStr | None = Field(default=None, description="Bearer token for Argo Server (client auth).")
    argo_token_file: Path = Field(default=SA_TOKEN_FILE, description="Read when argo_token is unset.")
    argo_verify_tls: bool = True
    argo_ui_url: str | None = Field(default=None, description="Public Argo UI base for job links.")

    kube_api_url: str | None = Field(default=None, description="Kubernetes API; in-cluster address when unset.")
    kube_ca_file: Path | None = Field(default=Path("/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"))
    kube_verify_tls: bool = True

    quota_concurrent_jobs: int = Field(default=4, ge=1)
    start_lock: StartLockMode = Field(
        default=StartLockMode.PROCESS, description="`lease` whenever more than one replica serves the tenant."
    )
    quota_storage_bytes: int = Field(default=50 * 1024**3, ge=0)
    webhook_allow_http: bool = Field(default=False, description="Also call http:// webhook URLs (local set-ups).")
    webhook_allowed_networks: list[str] = Field(
        default_factory=list,
        description="CIDRs webhooks may reach although not public (e.g. a receiver inside the provider's network); "
        "everything else non-public is refused.",
    )
    webhook_poll_seconds: float = Field(default=2.0, gt=0, description="How often finished jobs are looked for.")
    finish_poll_seconds: float = Field(
        default=2.0, gt=0, description="How often finished jobs are settled: logs stored, pods deleted, keys revoked."
    )
    log_max_bytes: int = Field(
        default=8 * 1024**2,
        ge=1024,
        description="A job pod's stored log is cut here, with a marker (keep it at or below the kubelet's "
        "containerLogMaxSize: the kubelet serves only its current log file).",
    )
    webhook_retry_seconds: list[float] = Field(
        default_factory=lambda: [5.0, 30.0, 120.0, 600.0, 1800.0, 7200.0, 18000.0, 36000.0],
        description="Delay before each retry of a failed delivery (the last retry fails the event for good).",
    )
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, description="One attempt's time limit.")
    orphan_sweep_interval_seconds: float = Field(
        default=900.0, gt=0, description="How often leftovers of job starts that never became a Workflow are removed."
    )
    orphan_grace_seconds: float = Field(
        default=900.0, ge=0, description="A start's objects younger than this may belong to a start still in flight."
    )
    webhook_secret_overlap_seconds: float = Field(
        default=86400, ge=0, description="How long a rotated signing secret keeps signing beside its successor."
    )

    root_path: str = Field(default="", description="Path prefix when served behind an ingress path.")

    @cached_property
    def token_digests(self) -> tuple[str, ...]:
        return tuple(d.strip().lower() for d in self.token_sha256.get_secret_value().split(",") if d.strip())

    @cached_property
    def keys(self) -> KeyLayout:
        return KeyLayout(self.s3_prefix)

    def argo_bearer(self) -> str:
        """The current ServiceAccount token (re-read: projected tokens rotate)."""
        if self.argo_token is not None:
            return self.argo_token.get_secret_value()
        return self.argo_token_file.read_text().strip()
