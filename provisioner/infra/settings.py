"""Settings of the provisioner, from ``WML_PROVISIONER_*`` environment variables, in sections.

Each section is a model of one concern (state, catalogue, cluster, storage, tenant API, quota, connector, and one
per signaling protocol); :class:`ProvisionerSettings` is all of them at once, read from the environment. The
variables keep their flat names (``WML_PROVISIONER_API_REPLICAS``), so a section groups code, not configuration.
"""

from __future__ import annotations

import socket
import uuid
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from templates.names import namespace_of

DEFAULT_DB = Path.home() / ".local" / "state" / "workflow-middlelayer" / "provisioner.db"

IdentitySource = Literal["assignee", "management"]


def _management_only() -> list[IdentitySource]:
    return ["management"]


class StateSettings(BaseModel):
    """Durable state, the reconciler and several replicas: where state lives and how work is shared."""

    database_url: str = Field(
        default=f"sqlite:///{DEFAULT_DB}",
        description="SQLAlchemy URL; SQLite by default, e.g. postgresql+psycopg://user:pw@host/db.",
    )
    reconcile_interval_seconds: float = 10.0
    leader_election: bool = Field(
        default=True, description="Run the reconciler only while holding a Kubernetes Lease (several replicas)."
    )
    leader_lease_namespace: str = Field(default="workflow-middlelayer", description="Namespace of the leader Lease.")
    leader_lease_name: str = "workflow-provisioner"
    leader_lease_seconds: int = Field(
        default=15, ge=3, description="A leader that stops renewing is replaced after this long; also the row claims'."
    )
    replica_id: str = Field(
        default_factory=lambda: f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}",
        description="This replica's name in the Lease and in tenant claims (default: host name and a random tail).",
    )
    worker_threads: int = Field(default=4, ge=1, description="Threads for tenant work (Kubernetes, MinIO, EDC).")
    work_max_attempts: int = Field(default=20, ge=1, description="Failed provisioning steps before 'failed'.")
    admin_token: SecretStr | None = Field(default=None, description="Bearer token for /admin; unset disables it.")
    reconciler_enabled: bool = True


class CatalogueSettings(BaseModel):
    """The provider's asset catalogue."""

    assets_dir: Path | None = Field(default=None, description="Directory of WorkflowAsset files.")
    asset_map: dict[str, str] = Field(
        default_factory=dict, description="EDC asset id -> WorkflowAsset name (identity when absent)."
    )


class ClusterSettings(BaseModel):
    """Kubernetes and Argo: the cluster tenants live in, and the network peers their pods may reach."""

    kubeconfig: Path | None = Field(default=None, description="Kubeconfig file; in-cluster config when unset.")
    namespace_prefix: str = "wml-"
    pod_security_level: Literal["privileged", "baseline", "restricted"] = "baseline"
    kube_timeout_seconds: float = 15.0
    argo_server_url: str = "http://argo-server.argo.svc:2746"
    argo_verify_tls: bool = True
    argo_ui_url: str | None = None
    argo_namespace: str = "argo"
    s3_egress_cidrs: list[str] = Field(default_factory=lambda: ["10.88.0.1/32"])
    kube_api_egress_cidrs: list[str] = Field(
        default_factory=lambda: ["10.88.0.1/32", "10.96.0.1/32"],
        description="argoexec's wait container reports results through the Kubernetes API.",
    )
    kube_api_egress_ports: list[int] = Field(default_factory=lambda: [443, 6443])
    argo_server_egress_cidrs: list[str] = Field(default_factory=lambda: ["10.88.0.2/32"])

    def namespace_for(self, tenant: str) -> str:
        return namespace_of(tenant, self.namespace_prefix)


class StorageSettings(BaseModel):
    """The object store (MinIO): the bucket, tenants' prefixes, retention and the safety net."""

    s3_endpoint: str = Field(default="10.88.0.1:9000", description="host:port as pods and the admin reach it.")
    s3_secure: bool = False
    s3_bucket: str = "workflows"
    s3_region: str | None = None
    s3_admin_access_key: SecretStr = SecretStr("minioadmin")
    s3_admin_secret_key: SecretStr = SecretStr("minioadmin")
    s3_prefix_template: str = "tenants/{tenant}"
    s3_public_url: str | None = Field(
        default=None,
        description="The object store as consumers reach it: set, tenant APIs answer large downloads with presigned "
        "URLs of that one object (the bytes skip the API); unset, every download streams through the API.",
    )
    retention: Literal["delete", "keep"] = Field(
        default="delete", description="What happens to a tenant's objects at teardown."
    )
    sweep_interval_seconds: float = Field(
        default=3600.0, gt=0, description="How often objects of deleted tenants are looked for (retention=delete)."
    )
    sweep_grace_seconds: float = Field(
        default=600.0, ge=0, description="A tenant deleted this long ago may still have writers finishing."
    )
    sweep_unknown_tenants: bool = Field(
        default=False,
        description="Also delete prefixes of tenants this database has never heard of. Off by default: a provisioner "
        "pointed at the wrong (or an empty) database must not wipe the bucket.",
    )
    multipart_abort_days: int = Field(
        default=1, ge=1, description="The bucket rule aborting multipart uploads left incomplete this many days."
    )

    def s3_prefix_for(self, tenant: str) -> str:
        return self.s3_prefix_template.format(tenant=tenant).strip("/")

    def s3_endpoint_url(self) -> str:
        return f"{'https' if self.s3_secure else 'http'}://{self.s3_endpoint}"


class TenantApiSettings(BaseModel):
    """Each tenant's consumer API: its pods, how it is started and reached, and its webhooks."""

    api_image: str = "localhost/wml/api:latest"
    api_command: list[str] = Field(
        default_factory=lambda: ["workflow-api-server", "--host", "0.0.0.0", "--port", "8080"]
    )
    api_port: int = 8080
    api_replicas: int = Field(
        default=2, ge=1, description="API pods per tenant; with 2 or more a PodDisruptionBudget keeps one serving."
    )
    api_requests_cpu: str = "50m"
    api_requests_memory: str = "96Mi"
    api_limits_cpu: str = "1"
    api_limits_memory: str = "512Mi"
    api_start_timeout_seconds: int = Field(
        default=120,
        ge=5,
        description="A tenant API not available this long after its rollout began (its Deployment's progress "
        "deadline), or available but not answering its token this long, counts as a failed attempt; after "
        "work_max_attempts the tenant fails and its connectors are told. Nothing is handed out before it answers.",
    )
    api_start_patience_seconds: int = Field(
        default=900,
        ge=5,
        description="A rollout past its progress deadline whose pods report no failure (scheduled, starting, not "
        "crashing: a busy node) is waited for this long since its pods were created before it counts as a failed "
        "attempt. Failures Kubernetes names (unschedulable, crashing, image missing, quota) count at once.",
    )
    api_start_concurrency: int = Field(
        default=8,
        ge=0,
        description="New tenant APIs started at once, cluster-wide (Deployments of tenant APIs not yet available); "
        "further new tenants wait for a slot before their API is created, so a burst of consumers does not starve "
        "every start of CPU. 0: no limit. Tenants that already have an API never wait.",
    )
    api_probe_url_template: str | None = Field(
        default=None,
        description="Where the provisioner checks that a tenant API answers with the token it is about to hand "
        "out; {namespace} and {tenant} are replaced. Default: the handed-out URL (api_url_template).",
    )
    api_probe_verify_tls: bool = Field(default=True, description="Verify TLS of the probed tenant API URL.")
    api_token_refresh_seconds: float = Field(
        default=1.0, gt=0, description="How often tenant APIs re-read their token set: a revoked token's last seconds."
    )
    api_url_template: str = Field(
        default="http://wml-api.{namespace}.svc:8080/",
        description="Tenant API base URL sent to EDC; {namespace} and {tenant} are replaced.",
    )
    ingress_enabled: bool = True
    ingress_class: str | None = None
    ingress_host: str | None = None
    ingress_path_template: str = "/tenants/{tenant}"
    ingress_namespace: str = Field(default="ingress-nginx", description="Only this namespace reaches the API.")
    webhook_egress: bool = Field(
        default=True, description="Tenant APIs may call public addresses (webhooks); off: no webhook can arrive."
    )
    webhook_allowed_networks: list[str] = Field(
        default_factory=list, description="Non-public CIDRs webhooks may reach too (receivers inside your network)."
    )
    webhook_allow_http: bool = Field(default=False, description="Allow http:// webhook URLs (local set-ups only).")


class QuotaSettings(BaseModel):
    """What bounds one tenant: its ResourceQuota, LimitRange defaults, concurrent jobs and stored bytes."""

    quota_cpu: str = "4"
    quota_memory: str = "8Gi"
    quota_ephemeral_storage: str = "20Gi"
    quota_pods: int = 20
    quota_gpus: int = 0
    quota_concurrent_jobs: int = 4
    quota_storage_bytes: int = 50 * 1024**3
    # Each job pod's stored log (the API cuts it there, with a marker); at most the kubelets' containerLogMaxSize.
    quota_log_bytes: int = Field(default=8 * 1024**2, ge=1024)
    limit_default_cpu: str = "500m"
    limit_default_memory: str = "512Mi"
    limit_default_request_cpu: str = "100m"
    limit_default_request_memory: str = "128Mi"
    # Every container declares ephemeral storage (the quota counts limits): a container without its own gets these.
    limit_default_ephemeral_storage: str = "2Gi"
    limit_default_request_ephemeral_storage: str = "64Mi"


class ConnectorSettings(BaseModel):
    """The provider's EDC connector: its management API (whose records decide identities), the
    http_provisioner protocol's callbacks, and how answers to connectors are retried."""

    edc_api_key: SecretStr | None = Field(default=None, description="x-api-key of the connector's management API.")
    edc_management_url: str | None = Field(
        default=None, description="Management API base (…/management); used to find the consumer."
    )
    edc_callback_url: str | None = Field(
        default=None,
        description="The connector's callback base (…/management/callback); callbacks go there and nowhere else. "
        "Default: the management URL + /callback. A request naming another callbackAddress is refused.",
    )
    edc_inbound_key: SecretStr | None = Field(
        default=None,
        description="Shared secret EDC presents on /edc/provision: header X-Api-Key or Authorization: Bearer, or "
        "as the last path segment (/edc/provision/<key>) for connectors that cannot send headers. Unset: the "
        "EDC endpoint refuses every request.",
    )
    identity_sources: list[IdentitySource] = Field(
        default_factory=_management_only,
        description="Where the consumer's identity comes from. 'management' verifies the transfer, asset and "
        "contract agreement with the connector's management API; 'assignee' trusts the request body's policy and "
        "is an explicit operator choice for connectors without a reachable management API.",
    )
    fallback_consumer: str | None = Field(
        default=None, description="Consumer id when no source names one; unset = the grant fails."
    )
    default_lifetime_seconds: int = Field(default=30 * 24 * 3600, ge=60)
    callback_max_attempts: int = Field(default=8, ge=1)
    retry_base_seconds: float = 1.0
    retry_max_seconds: float = 300.0
    http_timeout_seconds: float = 30.0
    deprovision_callback: bool = True
    request_max_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        description="The largest request body any provisioner route reads (413 past it); EDC's messages are a few "
        "KiB, an asset file registered through the admin API rarely more.",
    )

    def callback_base(self) -> str | None:
        """Where callbacks go: the configured callback URL, else the management API's ``/callback``."""
        if self.edc_callback_url:
            return self.edc_callback_url.rstrip("/")
        if self.edc_management_url:
            return f"{self.edc_management_url.rstrip('/')}/callback"
        return None

    @property
    def verify_with_management(self) -> bool:
        return "management" in self.identity_sources


class SignalingSettings(BaseModel):
    """The signaling protocol (EDC data plane signaling, JSON-LD; EDC 0.5-0.17 and Tractus-X)."""

    signaling_enabled: bool = Field(default=False, description="Serve /signaling and register with the connector.")
    signaling_inbound_key: SecretStr | None = Field(
        default=None,
        description="Shared secret the control plane presents on /signaling (and /dps without OAuth2): X-Api-Key, "
        "Bearer, or the path segment /signaling/<key>/dataflows (EDC's signaling client sends no credentials, so "
        "the registered URL carries it). Unset: the signaling endpoints refuse every request.",
    )
    signaling_control_url: str | None = Field(
        default=None,
        description="The connector's control API base (EDC's edc.control.endpoint, …/control): registration and "
        "callbacks go there and nowhere else; a start naming another callbackAddress is refused.",
    )
    signaling_control_key: SecretStr | None = Field(
        default=None, description="x-api-key for the control API (web.http.control.auth.type=tokenbased)."
    )
    signaling_self_url: str | None = Field(
        default=None, description="This provisioner's base URL as the control plane reaches it (for registration)."
    )
    signaling_dataplane_id: str = "workflow-middlelayer"
    signaling_source_types: list[str] = Field(
        default_factory=lambda: ["WorkflowMiddleLayer"],
        description="DataAddress types of the assets we serve (EDC offers them as HttpData-PULL).",
    )
    signaling_start_wait_seconds: float = Field(
        default=8.0,
        ge=0,
        description="How long a start waits for the tenant before answering 'provisioning' and calling back.",
    )
    signaling_register_interval_seconds: float = Field(default=30.0, gt=0)
    signaling_verify_with_management: bool = Field(
        default=True,
        description="Cross-check a start's consumer and asset with the connector's management API when it is "
        "configured (WML_PROVISIONER_EDC_MANAGEMENT_URL).",
    )


class DpsSettings(BaseModel):
    """The dps protocol (Eclipse Data Plane Signaling; EDC >= 0.18)."""

    dps_enabled: bool = False
    dps_control_url: str | None = Field(
        default=None,
        description="The control plane's signaling API base (EDC: …/api/signaling): started/completed/errored "
        "go to {base}/transfers/{id}/dataflow/…; a start naming another callbackAddress is refused.",
    )
    dps_registration_url: str | None = Field(
        default=None, description="Where to PUT our registration (EDC: {management}/v4/dataplanes)."
    )
    dps_registration_key: SecretStr | None = Field(default=None, description="x-api-key for the registration call.")
    dps_profiles: list[str] = Field(
        default_factory=lambda: ["HttpData-PULL", "https://w3id.org/dspace-sig/profile/http-pull"],
        description="transferType (RC2) or profile (RC3) values we serve.",
    )
    dps_oauth2_private_key: SecretStr | None = Field(
        default=None,
        description="PEM EC/RSA key: with it our callbacks carry a JWT (sub = our data plane id) and the "
        "registration publishes its public JWKS (the oauth2_client_credentials profile).",
    )
    dps_control_plane_id: str = Field(default="control-plane", description="`sub` of the control plane's tokens.")
    dps_control_plane_jwks: str | None = Field(
        default=None, description="JWKS (JSON) that verifies the control plane's bearer tokens; with it, required."
    )


class ProvisionerSettings(
    StateSettings,
    CatalogueSettings,
    ClusterSettings,
    StorageSettings,
    TenantApiSettings,
    QuotaSettings,
    ConnectorSettings,
    SignalingSettings,
    DpsSettings,
    BaseSettings,
):
    """Every section, read from ``WML_PROVISIONER_*``."""

    model_config = SettingsConfigDict(env_prefix="WML_PROVISIONER_", frozen=True)

    def api_url_for(self, tenant: str) -> str:
        return self.api_url_template.format(namespace=self.namespace_for(tenant), tenant=tenant)

    def api_probe_url_for(self, tenant: str) -> str:
        template = self.api_probe_url_template or self.api_url_template
        return template.format(namespace=self.namespace_for(tenant), tenant=tenant)
