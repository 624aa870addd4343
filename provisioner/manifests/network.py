"""The tenant's NetworkPolicies: deny by default; job pods reach S3, DNS and the Kubernetes API only; the API is
reached from the ingress only and reaches S3, Argo Server, DNS, Kubernetes and public webhook receivers."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from provisioner.infra.settings import ProvisionerSettings
from provisioner.manifests.spec import TenantSpec, _meta, _obj
from templates.labels import LABEL_NAME
from templates.names import API, DEFAULT_DENY, WORKERS_POLICY

WORKFLOW_POD_LABEL = "workflows.argoproj.io/workflow"


def _port_of(endpoint: str, default: int) -> int:
    return urlsplit(f"//{endpoint}").port or default


def _cidr_peers(cidrs: list[str], ports: list[int]) -> list[dict[str, Any]]:
    if not cidrs:
        return []
    return [{"to": [{"ipBlock": {"cidr": c}} for c in cidrs], "ports": [{"protocol": "TCP", "port": p} for p in ports]}]


NON_PUBLIC_V4 = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "224.0.0.0/3",
]


def network_policies(settings: ProvisionerSettings, spec: TenantSpec) -> list[dict[str, Any]]:
    dns = {
        "to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    }
    s3 = _cidr_peers(settings.s3_egress_cidrs, [_port_of(settings.s3_endpoint, 443 if settings.s3_secure else 80)])
    kube_api = _cidr_peers(settings.kube_api_egress_cidrs, settings.kube_api_egress_ports)
    argo_port = urlsplit(settings.argo_server_url).port or 2746
    argo = [
        *_cidr_peers(settings.argo_server_egress_cidrs, [argo_port]),
        {
            "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": settings.argo_namespace}}}],
            "ports": [{"protocol": "TCP", "port": argo_port}],
        },
    ]
    # Webhooks go to public addresses (any port), never to private, link-local or loopback ranges, except the
    # networks the operator allows; the API checks the same again on every delivery (api/webhooks/targets.py).
    hooks: list[dict[str, Any]] = []
    if settings.webhook_egress:
        hooks.append({"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": NON_PUBLIC_V4}}]})
        hooks.extend({"to": [{"ipBlock": {"cidr": c}}]} for c in settings.webhook_allowed_networks)
    np = "networking.k8s.io/v1"
    return [
        _obj(
            np,
            "NetworkPolicy",
            _meta(spec, DEFAULT_DENY),
            spec={"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
        ),
        # Workflow pods: no ingress; egress only to S3 (artifacts), DNS, and the Kubernetes API that
        # argoexec's wait container reports to. The worker container shares the pod's network.
        _obj(
            np,
            "NetworkPolicy",
            _meta(spec, WORKERS_POLICY),
            spec={
                "podSelector": {"matchExpressions": [{"key": WORKFLOW_POD_LABEL, "operator": "Exists"}]},
                "policyTypes": ["Ingress", "Egress"],
                "egress": [dns, *s3, *kube_api],
            },
        ),
        # The API: ingress only from the ingress controller's namespace; egress to S3, Argo Server, DNS, the
        # Kubernetes API (job environment Secrets) and webhook receivers.
        _obj(
            np,
            "NetworkPolicy",
            _meta(spec, API),
            spec={
                "podSelector": {"matchLabels": {LABEL_NAME: API}},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [
                    {
                        "from": [
                            {
                                "namespaceSelector": {
                                    "matchLabels": {"kubernetes.io/metadata.name": settings.ingress_namespace}
                                }
                            }
                        ],
                        "ports": [{"protocol": "TCP", "port": settings.api_port}],
                    }
                ],
                "egress": [dns, *s3, *argo, *kube_api, *hooks],
            },
        ),
    ]
