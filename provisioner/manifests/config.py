"""The tenant's configuration objects: the executor's S3 Secret, the API's environment (ConfigMap and Secret),
the live token digests, each grant's token Secret, and the namespace's Argo artifact repository."""

from __future__ import annotations

import json
from typing import Any

import yaml

from provisioner.infra.settings import ProvisionerSettings
from provisioner.manifests.spec import TenantSpec, _meta, _obj, token_sha256
from templates import StorageTarget
from templates.compiler import JOB_S3_SECRET
from templates.jobs import S3_ACCESS_KEY, S3_SECRET_KEY, S3_SESSION_TOKEN
from templates.keys import JOB_NAME_PLACEHOLDER, POD_NAME_PLACEHOLDER, KeyLayout
from templates.labels import LABEL_GRANT
from templates.names import (
    API_ENV_CONFIGMAP,
    API_ENV_SECRET,
    API_TOKENS_SECRET,
    ARTIFACT_REPOSITORIES,
    S3_SECRET,
    grant_token_secret_name,
)

SECRET_ENV_KEYS = (
    "WML_API_S3_ACCESS_KEY",
    "WML_API_S3_SECRET_KEY",
    "WML_API_EXEC_S3_ACCESS_KEY",
    "WML_API_EXEC_S3_SECRET_KEY",
    "WML_API_TOKEN_SHA256",
    "WML_API_TOKEN_SCOPES",
)


def api_env(settings: ProvisionerSettings, spec: TenantSpec) -> tuple[dict[str, str], dict[str, str]]:
    """The tenant API's environment (``api.settings.ApiSettings``): (plain values, secret values)."""
    plain = {
        "WML_API_TENANT": spec.tenant,
        "WML_API_NAMESPACE": spec.namespace,
        "WML_API_CONTRACT_ID": spec.contract_id,
        "WML_API_S3_ENDPOINT_URL": settings.s3_endpoint_url(),
        "WML_API_S3_BUCKET": settings.s3_bucket,
        "WML_API_S3_PREFIX": settings.s3_prefix_for(spec.tenant),
        "WML_API_ARGO_SERVER_URL": settings.argo_server_url,
        "WML_API_ARGO_VERIFY_TLS": "true" if settings.argo_verify_tls else "false",
        "WML_API_QUOTA_CONCURRENT_JOBS": str(settings.quota_concurrent_jobs),
        "WML_API_QUOTA_STORAGE_BYTES": str(settings.quota_storage_bytes),
        "WML_API_LOG_MAX_BYTES": str(settings.quota_log_bytes),
        "WML_API_TOKEN_SECRET": API_TOKENS_SECRET,
        "WML_API_TOKEN_REFRESH_SECONDS": str(settings.api_token_refresh_seconds),
        # Several replicas serialise job starts through a Lease; one needs only its own lock.
        "WML_API_START_LOCK": "lease" if settings.api_replicas > 1 else "process",
    }
    if settings.s3_public_url:
        plain["WML_API_S3_PUBLIC_URL"] = settings.s3_public_url
    if settings.s3_region:
        plain["WML_API_S3_REGION"] = settings.s3_region
    if settings.argo_ui_url:
        plain["WML_API_ARGO_UI_URL"] = settings.argo_ui_url
    if settings.webhook_allow_http:
        plain["WML_API_WEBHOOK_ALLOW_HTTP"] = "true"
    if settings.webhook_allowed_networks:
        plain["WML_API_WEBHOOK_ALLOWED_NETWORKS"] = json.dumps(settings.webhook_allowed_networks)
    # Behind the ingress path the API sees the full path: tell it its prefix (from the URL actually handed out).
    if settings.ingress_enabled and settings.api_url_for(spec.tenant).rstrip("/").endswith(
        settings.ingress_path_template.format(tenant=spec.tenant).rstrip("/")
    ):
        plain["WML_API_ROOT_PATH"] = settings.ingress_path_template.format(tenant=spec.tenant).rstrip("/")
    secret = {
        "WML_API_S3_ACCESS_KEY": spec.s3_access_key,
        "WML_API_S3_SECRET_KEY": spec.s3_secret_key,
        # The executor user's keys: the API mints each job's own (scoped to it, revoked at its end) from them.
        "WML_API_EXEC_S3_ACCESS_KEY": spec.exec_access_key,
        "WML_API_EXEC_S3_SECRET_KEY": spec.exec_secret_key,
        "WML_API_TOKEN_SHA256": ",".join(sorted(spec.token_digests)),
        # The scopes travel with the digests, so a new pod knows them without asking Kubernetes first.
        "WML_API_TOKEN_SCOPES": _scopes_json(spec),
    }
    return plain, secret


def storage_target(settings: ProvisionerSettings, spec: TenantSpec) -> StorageTarget:
    return StorageTarget(
        endpoint=settings.s3_endpoint,
        bucket=settings.s3_bucket,
        prefix=settings.s3_prefix_for(spec.tenant),
        credentials_secret=JOB_S3_SECRET,  # each job's own keys, minted by the API (api.services.jobkeys)
        access_key_key=S3_ACCESS_KEY,
        secret_key_key=S3_SECRET_KEY,
        session_token_key=S3_SESSION_TOKEN,
        insecure=not settings.s3_secure,
        region=settings.s3_region,
    )


def executor_secret(spec: TenantSpec) -> dict[str, Any]:
    """The executor user's S3 keys: the truth the provisioner reads back (steps.credentials). No pod mounts it;
    the API holds a copy in its environment to mint each job's own short-lived keys from."""
    return _obj(
        "v1",
        "Secret",
        _meta(spec, S3_SECRET),
        type="Opaque",
        stringData={"accessKey": spec.exec_access_key, "secretKey": spec.exec_secret_key},
    )


def _scopes_json(spec: TenantSpec) -> str:
    """Each token digest's assets, as the API reads them; empty when the spec names none."""
    scopes: dict[str, list[str]] = {}
    for digest, asset in spec.token_scopes:
        scopes.setdefault(digest, []).append(asset)
    return json.dumps(scopes, sort_keys=True) if scopes else ""


def tokens_secret(spec: TenantSpec) -> dict[str, Any]:
    """The live grants' token digests, which the API re-reads (an empty set refuses every token), and the assets
    each token's grant covers (``scopes``: a token opens its own contract's assets only)."""
    data = {"sha256": ",".join(sorted(spec.token_digests))}
    if spec.token_scopes:  # none named (no active grant, or a hand-made tenant): every token covers every asset
        data["scopes"] = _scopes_json(spec)
    return _obj("v1", "Secret", _meta(spec, API_TOKENS_SECRET), type="Opaque", stringData=data)


def config_objects(settings: ProvisionerSettings, spec: TenantSpec) -> list[dict[str, Any]]:
    """S3 credentials, the API's environment, and the namespace's artifact repository."""
    plain, secret = api_env(settings, spec)
    target = storage_target(settings, spec)
    keys = KeyLayout(target.prefix)
    repository = {
        # Argo's log archive follows a symlink the worker can plant: the API stores logs (api.services.finishing).
        "archiveLogs": False,
        "s3": {
            "endpoint": target.endpoint,
            "bucket": target.bucket,
            "insecure": target.insecure,
            **({"region": target.region} if target.region else {}),
            "keyFormat": f"{keys.job_artifacts(JOB_NAME_PLACEHOLDER)}/{POD_NAME_PLACEHOLDER}",
            "accessKeySecret": {"name": JOB_S3_SECRET, "key": target.access_key_key},
            "secretKeySecret": {"name": JOB_S3_SECRET, "key": target.secret_key_key},
            "sessionTokenSecret": {"name": JOB_S3_SECRET, "key": S3_SESSION_TOKEN},
        },
    }
    return [
        executor_secret(spec),
        _obj("v1", "Secret", _meta(spec, API_ENV_SECRET), type="Opaque", stringData=secret),
        tokens_secret(spec),
        _obj("v1", "ConfigMap", _meta(spec, API_ENV_CONFIGMAP), data=plain),
        _obj(
            "v1",
            "ConfigMap",
            _meta(
                spec,
                ARTIFACT_REPOSITORIES,
                annotations={"workflows.argoproj.io/default-artifact-repository": "default"},
            ),
            data={"default": yaml.safe_dump(repository, sort_keys=True)},
        ),
    ]


def grant_token_secret(spec: TenantSpec, grant_id: int, token: str) -> dict[str, Any]:
    return _obj(
        "v1",
        "Secret",
        _meta(spec, grant_token_secret_name(grant_id), labels={LABEL_GRANT: str(grant_id)}),
        type="Opaque",
        stringData={"token": token, "sha256": token_sha256(token)},
    )
