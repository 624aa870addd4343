"""A small Kubernetes client for the kinds a tenant is made of: server-side apply, get, delete.

Server-side apply (field manager ``workflow-middlelayer``, conflicts forced) makes every step
idempotent: applying the same manifest twice changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

FIELD_MANAGER = "workflow-middlelayer"

# kubernetes ships py.typed but leaves these config helpers unannotated; these are their real signatures.
_new_client_from_config: Callable[..., client.ApiClient] = config.new_client_from_config
_load_incluster_config: Callable[..., None] = config.load_incluster_config


@dataclass(frozen=True)
class Kind:
    prefix: str  # /api/v1 or /apis/<group>/<version>
    plural: str
    namespaced: bool = True


KINDS: dict[tuple[str, str], Kind] = {
    ("v1", "Namespace"): Kind("/api/v1", "namespaces", namespaced=False),
    ("v1", "ServiceAccount"): Kind("/api/v1", "serviceaccounts"),
    ("v1", "Secret"): Kind("/api/v1", "secrets"),
    ("v1", "ConfigMap"): Kind("/api/v1", "configmaps"),
    ("v1", "Service"): Kind("/api/v1", "services"),
    ("v1", "ResourceQuota"): Kind("/api/v1", "resourcequotas"),
    ("v1", "LimitRange"): Kind("/api/v1", "limitranges"),
    ("rbac.authorization.k8s.io/v1", "Role"): Kind("/apis/rbac.authorization.k8s.io/v1", "roles"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): Kind("/apis/rbac.authorization.k8s.io/v1", "rolebindings"),
    ("networking.k8s.io/v1", "NetworkPolicy"): Kind("/apis/networking.k8s.io/v1", "networkpolicies"),
    ("networking.k8s.io/v1", "Ingress"): Kind("/apis/networking.k8s.io/v1", "ingresses"),
    ("apps/v1", "Deployment"): Kind("/apis/apps/v1", "deployments"),
    ("v1", "Pod"): Kind("/api/v1", "pods"),
    ("v1", "Node"): Kind("/api/v1", "nodes", namespaced=False),
    ("policy/v1", "PodDisruptionBudget"): Kind("/apis/policy/v1", "poddisruptionbudgets"),
    ("coordination.k8s.io/v1", "Lease"): Kind("/apis/coordination.k8s.io/v1", "leases"),
    ("argoproj.io/v1alpha1", "WorkflowTemplate"): Kind("/apis/argoproj.io/v1alpha1", "workflowtemplates"),
}


class KubeError(Exception):
    """Kubernetes could not do it (``status`` is None for transport errors)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


PARALLEL_APPLIES = 4  # objects of one step applied side by side (steps._applier)


def load_api_client(kubeconfig: Path | None, connections: int = 16) -> client.ApiClient:
    """A client with ``connections`` pooled connections: the client's default (5 per CPU of the node, not of
    the pod) is fewer than the worker threads' side-by-side applies, and urllib3 drops each connection over it."""
    configuration = client.Configuration()
    configuration.connection_pool_maxsize = connections
    if kubeconfig is not None:
        return _new_client_from_config(config_file=str(kubeconfig), client_configuration=configuration)
    try:
        _load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        return _new_client_from_config(client_configuration=configuration)
    return client.ApiClient(configuration)


class Kube:
    def __init__(self, api_client: client.ApiClient, timeout: float = 15.0) -> None:
        self.api = api_client
        self.timeout = timeout

    def _path(
        self,
        api_version: str,
        kind: str,
        name: str | None = None,
        namespace: str | None = None,
        every_namespace: bool = False,
    ) -> str:
        k = KINDS[(api_version, kind)]
        path = k.prefix
        if k.namespaced and not every_namespace:
            if not namespace:
                raise ValueError(f"{kind} needs a namespace")
            path += f"/namespaces/{namespace}"
        path += f"/{k.plural}"
        return f"{path}/{name}" if name else path

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: list[tuple[str, Any]] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        try:
            method, url, headers, payload, _ = self.api.param_serialize(
                method,
                path,
                query_params=query or [],
                header_params={"Content-Type": content_type, "Accept": "application/json"},
                body=body,
                auth_settings=["BearerToken"],
            )
            response = self.api.call_api(method, url, headers, payload, _request_timeout=self.timeout)
            # kubernetes ships py.typed but leaves RESTResponse.read() unannotated; it returns the body bytes.
            data: bytes = response.read()  # type: ignore[no-untyped-call]
        except ApiException as exc:
            raise KubeError(f"{method} {path}: {exc.status} {exc.reason}: {exc.body}", exc.status) from None
        except (HTTPError, OSError) as exc:
            raise KubeError(f"{method} {path}: {exc}") from None
        if not 200 <= response.status <= 299:
            text = data.decode(errors="replace")[:1000] if data else ""
            raise KubeError(f"{method} {path}: {response.status}: {text}", response.status)
        return json.loads(data) if data else {}

    def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        meta = manifest["metadata"]
        path = self._path(manifest["apiVersion"], manifest["kind"], meta["name"], meta.get("namespace"))
        applied = self._call(
            "PATCH",
            path,
            body=manifest,
            query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
            content_type="application/apply-patch+yaml",
        )
        return cast(dict[str, Any], applied)

    def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Create; a KubeError with status 409 when the name is taken."""
        meta = manifest["metadata"]
        path = self._path(manifest["apiVersion"], manifest["kind"], None, meta.get("namespace"))
        return cast(dict[str, Any], self._call("POST", path, body=manifest))

    def replace(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Replace, conditional on the ``resourceVersion`` in ``manifest``: 409 when someone wrote in between."""
        meta = manifest["metadata"]
        path = self._path(manifest["apiVersion"], manifest["kind"], meta["name"], meta.get("namespace"))
        return cast(dict[str, Any], self._call("PUT", path, body=manifest))

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        try:
            return cast(dict[str, Any], self._call("GET", self._path(api_version, kind, name, namespace)))
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    def list(
        self, api_version: str, kind: str, namespace: str | None = None, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        """The objects of one namespace, or of every namespace when ``namespace`` is None."""
        query = [("labelSelector", label_selector)] if label_selector else []
        path = self._path(api_version, kind, None, namespace, every_namespace=namespace is None)
        found = self._call("GET", path, query=query)
        return cast(list[dict[str, Any]], found.get("items", []))

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        """Delete; True when it existed. Dependents go in the background."""
        try:
            self._call(
                "DELETE",
                self._path(api_version, kind, name, namespace),
                body={"propagationPolicy": "Background"},
            )
        except KubeError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def version(self) -> dict[str, Any]:
        return cast(dict[str, Any], self._call("GET", "/version"))

    def service_account_token(self, namespace: str, name: str, seconds: int = 3600) -> str:
        """A short-lived token of a ServiceAccount (TokenRequest API)."""
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": seconds},
        }
        result = self._call("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token", body=body)
        return str(result["status"]["token"])
