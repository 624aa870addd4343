"""A grant's token opens only the assets its own contract covers (issue #30): the provisioner publishes each token's
assets beside its digest, and the API answers 403 problem documents for any other asset, lists only its own."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Iterator

import httpx
import pytest

from devstack.stack import kube
from provisioner import manifests
from tests.api.tenant import ApiTenant, api_tenant


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@pytest.fixture(scope="module")
def two_contracts(stack) -> Iterator[tuple[ApiTenant, str, str]]:
    """A tenant whose first token covers `dummy` and a second token covers `input-dummy`, as the provisioner writes
    them for two grants of one consumer."""
    with api_tenant(stack, "scopes") as tenant:
        other = secrets.token_urlsafe(32)
        spec = manifests.TenantSpec(
            tenant=tenant.name,
            namespace=tenant.namespace,
            token_digests=(digest(tenant.token), digest(other)),
            s3_access_key="",
            s3_secret_key="",
            token_scopes=((digest(tenant.token), "dummy"), (digest(other), "input-dummy")),
        )
        kube.apply(kube.dynamic(kube.api_client(stack.kubeconfig)), [manifests.tokens_secret(spec)])
        yield tenant, tenant.token, other


def _get(tenant: ApiTenant, token: str, path: str) -> httpx.Response:
    return httpx.get(f"{tenant.url}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=30)


def _assets(tenant: ApiTenant, token: str) -> set[str]:
    response = _get(tenant, token, "/v1/assets")
    assert response.status_code == 200, response.text
    return {a["name"] for a in response.json()["items"]}


def test_each_token_sees_its_own_contracts_assets(two_contracts: tuple[ApiTenant, str, str]) -> None:
    tenant, first, second = two_contracts
    deadline = time.monotonic() + 2 * tenant.settings.token_refresh_seconds + 5
    while _assets(tenant, first) != {"dummy"} and time.monotonic() < deadline:  # the next re-read of the set
        time.sleep(0.2)
    assert _assets(tenant, first) == {"dummy"}
    assert _assets(tenant, second) == {"input-dummy"}


def test_another_contracts_asset_is_a_403_problem(two_contracts: tuple[ApiTenant, str, str]) -> None:
    tenant, first, second = two_contracts
    _assets(tenant, first)  # the set is read (previous test)
    auth = {"Authorization": f"Bearer {first}"}
    for response in (
        _get(tenant, first, "/v1/assets/input-dummy"),
        _get(tenant, first, "/v1/assets/input-dummy/inputs"),
        _get(tenant, first, "/v1/jobs?asset=input-dummy"),
        httpx.put(f"{tenant.url}/v1/assets/input-dummy/inputs/env", content=b"A=1\n", headers=auth, timeout=30),
        httpx.post(f"{tenant.url}/v1/jobs", json={"asset": "input-dummy"}, headers=auth, timeout=30),
    ):
        assert response.status_code == 403, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert "does not cover asset 'input-dummy'" in response.json()["detail"]
    assert _get(tenant, first, "/v1/assets/dummy").status_code == 200
    assert _get(tenant, second, "/v1/assets/input-dummy").status_code == 200
    assert _get(tenant, second, "/v1/assets/dummy").status_code == 403
