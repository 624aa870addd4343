"""Every error the consumer API answers is a problem document (RFC 9457), and the schema says so.

The app runs in-process without the stack: these requests are refused before any backend is asked."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import ApiSettings

TOKEN = "t0ken"


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    settings = ApiSettings(
        tenant="t-1",
        namespace="wml-t-1",
        token_sha256=hashlib.sha256(TOKEN.encode()).hexdigest(),
        s3_endpoint_url="http://127.0.0.1:9",
        s3_access_key="a",
        s3_secret_key="b",
        s3_prefix="tenants/t-1",
        argo_server_url="http://127.0.0.1:9",
        argo_token="x",
        kube_api_url="https://127.0.0.1:9",
    )
    with TestClient(create_app(settings)) as c:
        yield c


AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.mark.parametrize(
    "method,path,headers,body,status",
    [
        ("GET", "/no/such/route", AUTH, None, 404),
        ("GET", "/no/such/route", {}, None, 401),  # without a token nothing, not even which routes exist
        ("DELETE", "/healthz", {}, None, 405),
        ("GET", "/v1/assets", {}, None, 401),
        ("GET", "/v1/assets", {"Authorization": "Bearer wrong"}, None, 401),
        ("POST", "/v1/jobs", AUTH, {"asset": 42, "unexpected": True}, 422),
        ("GET", "/v1/jobs?limit=100000", AUTH, None, 422),
        ("GET", "/v1/assets/..%2Fetc", AUTH, None, 404),
        ("GET", "/v1/assets/.hidden", AUTH, None, 400),
    ],
)
def test_errors_are_problem_documents(
    client: TestClient, method: str, path: str, headers: dict[str, str], body: object, status: int
) -> None:
    response = client.request(method, path, headers=headers, json=body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    doc = response.json()
    assert doc["status"] == status and doc["title"] and doc["detail"]
    assert doc["type"].startswith("urn:workflow-middlelayer:problem:")
    if status == 422:
        assert doc["errors"] and all("loc" in e and "msg" in e for e in doc["errors"])


def test_problem_types_are_stable_per_kind(client: TestClient) -> None:
    a = client.get("/v1/assets").json()["type"]
    b = client.get("/v1/jobs").json()["type"]
    assert a == b == "urn:workflow-middlelayer:problem:unauthorized"


def test_every_error_response_is_documented_as_a_problem(client: TestClient) -> None:
    schema = client.get("/openapi.json", headers=AUTH).json()
    assert "Problem" in schema["components"]["schemas"] and "HTTPValidationError" not in schema["components"]["schemas"]
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            codes = {c for c in operation["responses"] if c[0] in "45"}
            assert {"422", "503"} <= codes, (method, path)
            if path not in ("/healthz", "/readyz"):
                assert "401" in codes, (method, path)
            for code in codes:
                content = operation["responses"][code]["content"]
                assert content == {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}


def test_requests_are_logged_with_their_id_and_503_causes_never_with_a_secret(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from api.web.observability import JsonFormatter

    caplog.set_level(logging.INFO, logger="api")
    response = client.get("/v1/assets?x=secret-query", headers={**AUTH, "X-Request-Id": "req-123"})
    assert response.status_code == 503 and response.headers["X-Request-Id"] == "req-123"  # Argo is not there
    assert response.headers["content-type"].startswith("application/problem+json")
    generated = client.get("/v1/jobs").headers["X-Request-Id"]
    assert len(generated) == 32  # made up when the caller sent none (or an unusable one)
    lines = [JsonFormatter().format(r) for r in caplog.records]
    text = "\n".join(lines)
    assert any('"argo server unavailable' in line and '"request_id": "req-123"' in line for line in lines), text
    assert any('"route": "/v1/assets"' in line and '"status": 503' in line for line in lines), text
    assert generated in text
    for secret in (TOKEN, "secret-query", "b"):  # the token, a query string, the S3 secret key ("b")
        assert f'"{secret}"' not in text and f" {secret}" not in text, secret


def test_bodies_are_not_read_before_the_token_and_job_starts_are_small(client: TestClient) -> None:
    big = b"{" + b" " * (5 * 1024 * 1024) + b"}"
    headers = {"Content-Type": "application/json"}
    refused = client.post("/v1/jobs", content=big, headers=headers)
    assert refused.status_code == 401 and refused.json()["type"].endswith(":unauthorized")
    too_big = client.post("/v1/jobs", content=big, headers={**headers, **AUTH})
    assert too_big.status_code == 413 and too_big.headers["content-type"].startswith("application/problem+json")


def test_a_chunked_job_start_is_read_within_the_cap(client: TestClient) -> None:
    """EDC's data plane forwards bodies without a Content-Length: they are capped while read, not refused."""

    def chunks() -> Iterator[bytes]:
        yield b'{"asset": '
        yield b"42}"

    response = client.post("/v1/jobs", content=chunks(), headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == 422 and response.json()["errors"]  # parsed: validation, not a size refusal

    def endless() -> Iterator[bytes]:
        for _ in range(64):
            yield b" " * 65536

    refused = client.post("/v1/jobs", content=endless(), headers={**AUTH, "Content-Type": "application/json"})
    assert refused.status_code == 413
