"""Schemathesis over the API's OpenAPI document, against a real tenant API on the real stack:
no input it generates may cause a 5xx, and every documented response must match its schema.

Driven with Hypothesis directly: schemathesis' pytest plugin does not run under pytest 9."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import content_type_conformance, not_a_server_error, response_schema_conformance

from tests.api.tenant import ApiTenant

pytestmark = pytest.mark.stack


def test_no_server_errors_and_schema_conformance(tenant: ApiTenant) -> None:
    headers = {"Authorization": f"Bearer {tenant.token}"}
    schema = schemathesis.openapi.from_url(f"{tenant.url}/openapi.json", headers=headers)  # behind the token too
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case: schemathesis.Case) -> None:
            checks = [not_a_server_error, response_schema_conformance, content_type_conformance]
            case.call_and_validate(headers=headers, checks=checks)

        check()
