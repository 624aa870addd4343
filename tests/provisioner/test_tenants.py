"""The tenant's manifests, as data: names, RBAC, network policies, and the API's environment."""

from __future__ import annotations

import os

import pytest
import yaml

from api.settings import ApiSettings
from provisioner import manifests
from provisioner.infra.settings import ProvisionerSettings
from provisioner.manifests import TenantSpec
from templates import load_directory
from templates.names import (
    API,
    API_ENV_SECRET,
    API_START_LEASE,
    API_STORAGE_LEASE,
    API_TOKENS_SECRET,
    ARTIFACT_REPOSITORIES,
    S3_SECRET,
    WORKER,
    tenant_id_for,
)
from tests.provisioner.helpers import ASSETS

SETTINGS = ProvisionerSettings(database_url="sqlite:///:memory:", argo_server_url="http://10.88.0.2:2746")
SPEC = TenantSpec(
    tenant="t-abc",
    namespace="wml-t-abc",
    token_digests=("cd" * 32, "ab" * 32),
    s3_access_key="wml-t-abc",
    s3_secret_key="s3cr3t",
    exec_access_key="wml-t-abc-exec",
    exec_secret_key="ex3c",
    contract_id="contract-1",
    assets=list(load_directory(ASSETS).values()),
)


def test_tenant_id_is_stable_and_dns_safe() -> None:
    a = tenant_id_for("BPNL000000000001")
    assert a == tenant_id_for("BPNL000000000001") != tenant_id_for("BPNL000000000002")
    # 120 bits: nobody can search for a participant id that maps onto another consumer's tenant
    assert a.startswith("t-") and len(a) == 32 and a.replace("-", "").isalnum() and a.islower()


def test_api_env_is_exactly_api_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    plain, secret = manifests.api_env(SETTINGS, SPEC)
    assert set(secret) == set(manifests.SECRET_ENV_KEYS)
    assert not set(plain) & set(secret)
    for key in list(os.environ):
        if key.startswith("WML_API_"):
            monkeypatch.delenv(key)
    for key, value in {**plain, **secret}.items():
        monkeypatch.setenv(key, value)
    api = ApiSettings()  # type: ignore[call-arg]
    fields = {f"WML_API_{name.upper()}" for name in ApiSettings.model_fields}
    assert set(plain) | set(secret) <= fields
    assert api.tenant == "t-abc" and api.namespace == "wml-t-abc" and api.s3_prefix == "tenants/t-abc"
    assert api.token_digests == ("ab" * 32, "cd" * 32)  # one per grant
    assert api.s3_access_key.get_secret_value() == "wml-t-abc"
    assert api.s3_endpoint_url == "http://10.88.0.1:9000" and api.argo_server_url == "http://10.88.0.2:2746"


def test_roles_are_least_privilege() -> None:
    objects = {(o["kind"], o["metadata"]["name"]): o for o in manifests.rbac(SPEC)}
    worker = objects[("Role", WORKER)]["rules"]
    assert worker == [
        {"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"], "verbs": ["create", "patch"]}
    ]
    api_rules = objects[("Role", API)]["rules"]
    resources = {r for rule in api_rules for r in rule["resources"]}
    assert resources == {"workflows", "workflowtemplates", "pods", "pods/log", "events", "secrets", "leases"}
    assert all("*" not in rule["verbs"] for rule in api_rules)
    # Secrets: the job environment is written, never read back (no get/list/watch); the one readable Secret is
    # the token digests', by name
    writes, reads = [rule for rule in api_rules if "secrets" in rule["resources"]]
    assert writes["resources"] == ["secrets"] and set(writes["verbs"]) == {"create", "update", "patch", "delete"}
    assert "resourceNames" not in writes
    assert reads == {
        "apiGroups": [""],
        "resources": ["secrets"],
        "verbs": ["get"],
        "resourceNames": [API_TOKENS_SECRET],
    }
    # Leases: the start lock only (creating cannot be limited to a name in RBAC; the rest is, by name)
    create, named = [rule for rule in api_rules if "leases" in rule["resources"]]
    assert create["verbs"] == ["create"] and "resourceNames" not in create
    assert set(named["verbs"]) == {"get", "update", "delete"} and named["resourceNames"] == [
        API_START_LEASE,
        API_STORAGE_LEASE,
    ]
    # No long-lived token for job pods: Argo's executor gets a projected, pod-bound one (templates.compiler).
    assert ("Secret", "wml-worker.service-account-token") not in objects
    # A finished job's pods are deleted by the API once their logs are stored (admission: job pods only).
    assert any(rule["resources"] == ["pods"] and rule["verbs"] == ["delete"] for rule in api_rules)
    assert objects[("ServiceAccount", WORKER)]["automountServiceAccountToken"] is False


def test_network_policies_default_deny_and_worker_egress() -> None:
    policies = {p["metadata"]["name"]: p["spec"] for p in manifests.network_policies(SETTINGS, SPEC)}
    assert policies["wml-default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    workers = policies["wml-workers"]
    assert "ingress" not in workers
    peers = [peer for rule in workers["egress"] for peer in rule["to"]]
    cidrs = {p["ipBlock"]["cidr"] for p in peers if "ipBlock" in p}
    assert cidrs == set(SETTINGS.s3_egress_cidrs) | set(SETTINGS.kube_api_egress_cidrs)
    api_in = policies[API]["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"]
    assert api_in == {"kubernetes.io/metadata.name": SETTINGS.ingress_namespace}


def test_api_egress_reaches_public_webhooks_but_no_private_range() -> None:
    api_out = manifests.network_policies(SETTINGS, SPEC)[-1]["spec"]["egress"]
    blocks = [peer["ipBlock"] for rule in api_out for peer in rule["to"] if "ipBlock" in peer]
    world = [b for b in blocks if b["cidr"] == "0.0.0.0/0"]
    assert len(world) == 1 and {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"} <= set(
        world[0]["except"]
    )
    closed = SETTINGS.model_copy(update={"webhook_egress": False})
    assert not any(
        peer.get("ipBlock", {}).get("cidr") == "0.0.0.0/0"
        for rule in manifests.network_policies(closed, SPEC)[-1]["spec"]["egress"]
        for peer in rule["to"]
    )


def test_templates_and_artifact_repository_use_the_tenant_prefix() -> None:
    templates = manifests.workflow_templates(SETTINGS, SPEC)
    assert {t["metadata"]["name"] for t in templates} == {"wml-dummy", "wml-input-dummy"}
    assert all(t["metadata"]["namespace"] == "wml-t-abc" for t in templates)
    assert all(t["spec"]["serviceAccountName"] == WORKER for t in templates)
    config = {o["metadata"]["name"]: o for o in manifests.config_objects(SETTINGS, SPEC)}
    repo = config[ARTIFACT_REPOSITORIES]
    assert repo["metadata"]["annotations"]["workflows.argoproj.io/default-artifact-repository"] == "default"
    assert "keyFormat: tenants/t-abc/exec/" in repo["data"]["default"]
    # the executor gets its own narrow credentials; the API's stay in the API's environment only
    assert config[S3_SECRET]["stringData"] == {"accessKey": "wml-t-abc-exec", "secretKey": "ex3c"}
    assert config[API_ENV_SECRET]["stringData"]["WML_API_S3_SECRET_KEY"] == "s3cr3t"


def test_executor_policy_cannot_touch_receipts_staging_or_other_tenants() -> None:
    from provisioner.infra.s3users import executor_policy

    statements = executor_policy("workflows", "tenants/t-abc")["Statement"]
    # no access keys of its own (they would outlive every job): only the API's STS minting of job keys
    assert {"Effect": "Deny", "Action": ["admin:CreateServiceAccount"]} in statements
    resources = {r for s in statements for r in s.get("Resource", [])}
    assert not any("receipt" in r or "staging" in r for r in resources)
    writes = [s for s in statements if "s3:PutObject" in s["Action"]]
    # one prefix of its own: S3 policy wildcards match '/', so no pattern under jobs/ would be exact
    assert {r for s in writes for r in s["Resource"]} == {"arn:aws:s3:::workflows/tenants/t-abc/exec/*"}
    assert not any("s3:DeleteObject" in s["Action"] for s in statements)


def test_api_container_is_capped_and_rolls_without_downtime() -> None:
    deployment = next(o for o in manifests.api_objects(SETTINGS, SPEC) if o["kind"] == "Deployment")
    spec = deployment["spec"]
    assert spec["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    container = spec["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["ephemeral-storage"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_the_provisioner_holds_every_right_it_grants() -> None:
    """Kubernetes refuses a Role granting what its creator does not hold: the ClusterRole must cover the tenants'."""
    docs = yaml.safe_load_all((ASSETS.parents[1] / "argo" / "base" / "provisioner" / "rbac.yaml").read_text())
    [cluster_role] = [d for d in docs if d and d["kind"] == "ClusterRole"]
    held = {
        (group, resource, verb)
        for rule in cluster_role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    granted = {
        (group, resource, verb)
        for role in manifests.rbac(SPEC)
        if role["kind"] == "Role"
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert granted - held == set()


def test_the_provisioner_may_apply_every_kind_a_tenant_is_made_of() -> None:
    """Server-side apply is a patch: the ClusterRole holds it for every kind the builders make (a new kind,
    like the API's PodDisruptionBudget, without its rule would fail on a real cluster only)."""
    from provisioner.infra.kube import KINDS

    docs = yaml.safe_load_all((ASSETS.parents[1] / "argo" / "base" / "provisioner" / "rbac.yaml").read_text())
    [cluster_role] = [d for d in docs if d and d["kind"] == "ClusterRole"]
    held = {
        (group, resource)
        for rule in cluster_role["rules"]
        if {"create", "patch"} <= set(rule["verbs"]) and "resourceNames" not in rule
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    settings = SETTINGS.model_copy(update={"api_replicas": 2})
    made = [
        manifests.namespace(settings, SPEC),
        *manifests.rbac(SPEC),
        *manifests.quota(settings, SPEC),
        *manifests.network_policies(settings, SPEC),
        *manifests.config_objects(settings, SPEC),
        *manifests.api_objects(settings, SPEC),
    ]
    assert "PodDisruptionBudget" in {m["kind"] for m in made}
    for manifest in made:
        group = manifest["apiVersion"].rpartition("/")[0]
        plural = KINDS[(manifest["apiVersion"], manifest["kind"])].plural
        assert (group, plural) in held, manifest["kind"]


def test_every_container_declares_ephemeral_storage_and_the_quota_counts_its_limits() -> None:
    """Issue #26: a quota on requests alone let a pod that declared little fill the node's disk."""
    quota, limits = manifests.quota(SETTINGS, SPEC)
    assert quota["spec"]["hard"]["limits.ephemeral-storage"] == SETTINGS.quota_ephemeral_storage
    assert quota["spec"]["hard"]["requests.ephemeral-storage"] == SETTINGS.quota_ephemeral_storage
    [container] = limits["spec"]["limits"]
    assert container["default"]["ephemeral-storage"] == SETTINGS.limit_default_ephemeral_storage
    assert container["defaultRequest"]["ephemeral-storage"] == SETTINGS.limit_default_request_ephemeral_storage
    # Argo's init and wait containers are bounded by the controller's own executor settings, as operators deploy it
    configmap = yaml.safe_load(
        (ASSETS.parents[1] / "argo" / "base" / "argo-config" / "workflow-controller-configmap.yaml").read_text()
    )
    executor = yaml.safe_load(configmap["data"]["executor"])
    for kind in ("requests", "limits"):
        assert {"cpu", "memory", "ephemeral-storage"} <= set(executor["resources"][kind])
