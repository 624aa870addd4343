"""Name rules shared by asset files, S3 keys and Argo objects.

Consumers keep the names the asset author chose (``input.zip``); where Argo or Kubernetes rules are
narrower the compiler maps them deterministically and records the mapping in the template.
"""

from __future__ import annotations

import hashlib
import re

# Safe as a file name and as one S3 key segment: letters, digits, '.', '_', '-'; never '.' or '..'.
SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}\Z")
_DNS_LABEL_INVALID = re.compile(r"[^a-z0-9-]+")
_ARGO_NAME_INVALID = re.compile(r"[^A-Za-z0-9_-]+")


def check_safe_name(name: str) -> str:
    """Return ``name`` if it is safe as a file name and an S3 key segment, else raise ValueError."""
    if "\x00" in name or "/" in name or "\\" in name:
        raise ValueError("must not contain '/', '\\' or NUL")
    if name in {".", ".."} or ".." in name:
        raise ValueError("must not contain '..'")
    if not SAFE_NAME.match(name):
        raise ValueError("use 1-128 letters, digits, '.', '_' or '-', starting with a letter, digit or '_'")
    return name


def _suffix(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:6]


def argo_name(name: str) -> str:
    """Map a safe name to one that Argo accepts for parameters and artifacts (no '.')."""
    mapped = _ARGO_NAME_INVALID.sub("-", name)
    return mapped if mapped == name else f"{mapped}-{_suffix(name)}"


def dns_label(name: str, max_len: int = 63) -> str:
    """Map a name to an RFC 1123 label (Kubernetes object names, label values)."""
    mapped = _DNS_LABEL_INVALID.sub("-", name.lower()).strip("-") or "x"
    if mapped != name or len(mapped) > max_len:
        mapped = f"{mapped[: max_len - 7].rstrip('-')}-{_suffix(name)}"
    return mapped


# --- names derived from a tenant: the one owner (the provisioner makes these objects, the API and the compiler
# refer to them) ---------------------------------------------------------------------------------------------

API = "wml-api"  # the tenant API's Deployment, Service, ServiceAccount and its pods' app.kubernetes.io/name
WORKER = "wml-worker"  # the ServiceAccount of a job's pods
S3_SECRET = "wml-s3"  # the executor user's keys: held for the API, which mints each job's own from them
GRANT_TOKEN_PREFIX = "wml-grant-"  # one Secret per grant with its token in full; read only by the provisioner
API_ENV_SECRET = "wml-api-env"  # the API pods' secret environment
API_TOKENS_SECRET = "wml-api-tokens"  # the live grants' token digests, re-read by the API (no restart for a token)
API_ENV_CONFIGMAP = "wml-api-config"  # the API pods' plain environment
ARTIFACT_REPOSITORIES = "artifact-repositories"  # the namespace's Argo artifact repository ConfigMap
QUOTA = "wml-quota"  # the tenant's ResourceQuota
LIMITS = "wml-limits"  # the tenant's LimitRange
DEFAULT_DENY = "wml-default-deny"  # the NetworkPolicy denying everything not allowed by another
WORKERS_POLICY = "wml-workers"  # the NetworkPolicy of job pods
API_START_LEASE = "wml-api-start"  # the start lock of several API replicas (coordination.k8s.io Lease)
API_STORAGE_LEASE = "wml-api-storage"  # the storage quota's writes under way, shared by several API replicas
TENANT_ID_PREFIX = "t-"


def tenant_id_for(consumer_id: str) -> str:
    """A stable, DNS-safe tenant id for a new consumer: 120 bits of its sha256, so that no one can choose a
    participant id that maps onto another consumer's tenant. (Tenants are found by their consumer id, never by
    this hash alone; tenants made before it was lengthened keep their 48-bit ids.)"""
    return TENANT_ID_PREFIX + hashlib.sha256(consumer_id.encode()).hexdigest()[:30]


def namespace_of(tenant: str, prefix: str) -> str:
    """The tenant's namespace (``prefix`` is the operator's ``namespace_prefix``)."""
    return f"{prefix}{tenant}"


def api_s3_user(tenant: str) -> str:
    """The tenant API's MinIO user: the whole tenant prefix."""
    return f"wml-{tenant}"


def exec_s3_user(tenant: str) -> str:
    """The executor's MinIO user: job inputs (read), outputs and logs (write); nothing else."""
    return f"{api_s3_user(tenant)}-exec"


def grant_token_secret_name(grant_id: int) -> str:
    """The Secret holding one grant's token."""
    return f"{GRANT_TOKEN_PREFIX}{grant_id}"


def template_name(asset_name: str) -> str:
    """The WorkflowTemplate of an asset."""
    return dns_label(f"wml-{asset_name}")


# A job's environment Secret is named ``<job id>`` + this (templates.jobs.env_secret_name).
ENV_SECRET_SUFFIX = "-env"
# A job's own S3 credentials (minted by the API for that job alone, revoked when it ends) live in ``<job id>`` +
# this (templates.jobs.s3_secret_name); Argo mounts them into the job's init and wait containers only.
S3_SECRET_SUFFIX = "-s3"
