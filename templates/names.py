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


# Objects the provisioner's RBAC names and the consumer API uses, in the tenant namespace.
API_START_LEASE = "wml-api-start"  # the start lock of several API replicas (coordination.k8s.io Lease)


def template_name(asset_name: str) -> str:
    """The WorkflowTemplate of an asset."""
    return dns_label(f"wml-{asset_name}")


# A job's environment Secret is named ``<job id>`` + this (templates.jobs.env_secret_name).
ENV_SECRET_SUFFIX = "-env"
