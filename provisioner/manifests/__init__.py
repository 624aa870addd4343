"""Builders of a tenant's Kubernetes objects: plain manifests, applied by the steps with server-side apply.

One module per group of objects (``namespace``, ``network``, ``config``, ``api``, ``workflows``), each a pure
function of the settings and a :class:`~provisioner.manifests.spec.TenantSpec`. Every name they give an object is
owned by :mod:`templates.names`, every label by :mod:`templates.labels`.
"""

from provisioner.manifests.api import api_objects
from provisioner.manifests.config import (
    SECRET_ENV_KEYS,
    api_env,
    config_objects,
    executor_secret,
    grant_token_secret,
    storage_target,
    tokens_secret,
)
from provisioner.manifests.namespace import namespace, quota, rbac
from provisioner.manifests.network import WORKFLOW_POD_LABEL, network_policies
from provisioner.manifests.spec import TenantSpec, token_sha256
from provisioner.manifests.workflows import workflow_templates

__all__ = [
    "SECRET_ENV_KEYS",
    "WORKFLOW_POD_LABEL",
    "TenantSpec",
    "api_env",
    "api_objects",
    "config_objects",
    "executor_secret",
    "grant_token_secret",
    "namespace",
    "network_policies",
    "quota",
    "rbac",
    "storage_target",
    "token_sha256",
    "tokens_secret",
    "workflow_templates",
]
