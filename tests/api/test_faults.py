"""Backend faults give 503 with a reason; nothing changes."""

from __future__ import annotations

import httpx
import pytest

from api.app import create_app
from devstack.servers import free_port, serve
from tests.api.tenant import ApiTenant

pytestmark = pytest.mark.stack


def _headers(tenant: ApiTenant) -> dict[str, str]:
    return {"Authorization": f"Bearer {tenant.token}"}


def test_s3_down_is_503(tenant: ApiTenant) -> None:
    dead = tenant.settings.model_copy(update={"s3_endpoint_url": f"http://127.0.0.1:{free_port()}"})
    with serve(create_app(dead)) as url:
        response = httpx.put(
            f"{url}/v1/assets/dummy/inputs/env", content=b"A=1\n", headers=_headers(tenant), timeout=60
        )
        assert response.status_code == 503, response.text
        assert response.json()["title"] == "Storage Unavailable"
        assert response.headers["retry-after"]
        assert httpx.get(f"{url}/readyz", timeout=60).status_code == 503


def test_argo_down_is_503(tenant: ApiTenant) -> None:
    dead = tenant.settings.model_copy(update={"argo_server_url": f"http://127.0.0.1:{free_port()}"})
    with serve(create_app(dead)) as url:
        response = httpx.get(f"{url}/v1/assets", headers=_headers(tenant), timeout=30)
        assert response.status_code == 503
        assert "Argo Server is unreachable" in response.json()["detail"]
        assert tenant.token not in response.text
