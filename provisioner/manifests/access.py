"""Read a provisioned tenant's access back from Kubernetes: the consumer API's environment.

``tenant_api_env`` returns exactly the ``WML_API_*`` variables the tenant's API Deployment gets
(ConfigMap ``wml-api-config`` + Secret ``wml-api-env``), so a test or an operator can start the same API
as a local process; with ``argo_token_seconds`` it adds a TokenRequest token of the tenant's ``wml-api``
ServiceAccount as ``WML_API_ARGO_TOKEN`` (what the pod reads from its mounted token file) and the Kubernetes
API's address and CA as this process reaches them (the pod uses its in-cluster ones).
"""

from __future__ import annotations

import base64

from provisioner.infra.kube import Kube
from provisioner.infra.settings import ProvisionerSettings
from templates.names import API, API_ENV_CONFIGMAP, API_ENV_SECRET


class NotProvisioned(LookupError):
    pass


def tenant_api_env(
    kube: Kube, settings: ProvisionerSettings, tenant_id: str, argo_token_seconds: int | None = 3600
) -> dict[str, str]:
    namespace = settings.namespace_for(tenant_id)
    config = kube.get("v1", "ConfigMap", API_ENV_CONFIGMAP, namespace)
    secret = kube.get("v1", "Secret", API_ENV_SECRET, namespace)
    if config is None or secret is None:
        raise NotProvisioned(f"tenant {tenant_id} has no API environment in {namespace}")
    env = {str(k): str(v) for k, v in (config.get("data") or {}).items()}
    env.update({str(k): base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()})
    if argo_token_seconds:
        # A local process has neither the pod's token file nor its in-cluster address: hand both over.
        env["WML_API_ARGO_TOKEN"] = kube.service_account_token(namespace, API, argo_token_seconds)
        cfg = kube.api.configuration
        env["WML_API_KUBE_API_URL"] = str(cfg.host)
        if cfg.ssl_ca_cert:
            env["WML_API_KUBE_CA_FILE"] = str(cfg.ssl_ca_cert)
    return env
