"""EDC's HTTP provisioner protocol at our endpoint: status codes EDC reads, and nothing created on
requests that can never succeed. Real HTTP, real SQLite, real kube-apiserver."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import text

from provisioner.infra.services import Services
from tests.provisioner.helpers import counts
from tests.provisioner.servers import EdcStub
from tests.support.edc import new_consumer, post, tenant_of

pytestmark = pytest.mark.stack


def assert_nothing_created(svc: Services, consumer: str) -> None:
    assert counts(svc) == (0, 0)
    assert svc.kube.get("v1", "Namespace", svc.settings.namespace_for(tenant_of(consumer))) is None


@pytest.mark.parametrize(
    "raw",
    [b"{bad json", b"", b"[]", b'"provision"', b"null", b"\xff\xfe{}", b'{"assetId": "dummy"'],
    ids=["syntax", "empty", "array", "string", "null", "not-utf8", "truncated"],
)
def test_malformed_json_is_400_and_creates_nothing(provisioner: str, services: Services, raw: bytes) -> None:
    response = post(provisioner, None, raw=raw)
    assert response.status_code == 400
    assert response.json()["detail"]
    assert counts(services) == (0, 0)


@pytest.mark.parametrize("missing", ["assetId", "transferProcessId", "resourceDefinitionId", "callbackAddress"])
def test_missing_field_is_400_and_creates_nothing(
    provisioner: str, services: Services, missing: str, contract: Callable[..., dict[str, Any]]
) -> None:
    consumer = new_consumer()
    body = contract(consumer=consumer)
    del body[missing]
    response = post(provisioner, body)
    assert response.status_code == 400
    assert missing in str(response.json()["detail"])
    assert_nothing_created(services, consumer)


@pytest.mark.parametrize(
    "field,value",
    [
        ("transferProcessId", ""),
        ("assetId", 42),
        ("callbackAddress", "not a url"),
        ("type", "reprovision"),
        ("policy", "opaque-but-not-an-object"),
        ("resourceDefinitionId", None),
    ],
)
def test_invalid_field_is_400(
    provisioner: str, services: Services, field: str, value: object, contract: Callable[..., dict[str, Any]]
) -> None:
    consumer = new_consumer()
    response = post(provisioner, {**contract(consumer=consumer), field: value})
    assert response.status_code == 400, response.text
    assert_nothing_created(services, consumer)


def test_unknown_asset_is_4xx_and_creates_nothing(
    provisioner: str, services: Services, contract: Callable[..., dict[str, Any]]
) -> None:
    consumer = new_consumer()
    response = post(provisioner, contract(asset="no-such-asset", consumer=consumer))
    assert response.status_code == 422
    assert "no-such-asset" in response.json()["detail"]
    assert_nothing_created(services, consumer)


def test_deprovision_of_unknown_transfer_is_404(
    provisioner: str, services: Services, contract: Callable[..., dict[str, Any]]
) -> None:
    response = post(provisioner, contract(kind="deprovision"))
    assert response.status_code == 404
    assert counts(services) == (0, 0)


def test_unknown_fields_tolerated_and_missing_type_means_provision(
    provisioner: str, services: Services, contract: Callable[..., dict[str, Any]]
) -> None:
    consumer = new_consumer()
    body = contract(consumer=consumer, kind=None)
    body["somethingNew"] = {"x": [1, 2]}
    body["policy"]["@context"] = {"odrl": "http://www.w3.org/ns/odrl/2/"}
    body["policy"]["profile"] = None
    response = post(provisioner, body)
    assert response.status_code == 201, response.text
    assert response.json()["tenant"] == tenant_of(consumer)


def test_duplicates_create_nothing_twice(
    provisioner: str, services: Services, contract: Callable[..., dict[str, Any]], edc: tuple[EdcStub, str]
) -> None:
    consumer = new_consumer()
    body = contract(consumer=consumer)
    first = post(provisioner, body)
    again = post(provisioner, body)
    assert first.status_code == 201 and again.status_code == 200
    assert first.json()["grant"] == again.json()["grant"]
    other = post(provisioner, contract(consumer=consumer))  # a second contract of the same consumer
    assert other.status_code == 201
    assert counts(services) == (2, 1)
    # deprovision answers exactly 200, also when repeated
    edc[0].end(body["transferProcessId"])
    deprovision = {**body, "type": "deprovision"}
    assert post(provisioner, deprovision).status_code == 200
    assert post(provisioner, deprovision).status_code == 200
    assert counts(services) == (2, 1)


def test_database_failure_is_503(provisioner: str, services: Services, contract: Callable[..., dict[str, Any]]) -> None:
    with services.engine.begin() as conn:
        conn.execute(text("DROP TABLE grants"))
    response = post(provisioner, contract())
    assert response.status_code == 503
    assert response.headers["retry-after"]
