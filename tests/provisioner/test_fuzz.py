"""Schemathesis over the provisioner's own OpenAPI document (EDC's HTTP provisioner, signaling and DPS,
admin, health), against a real provisioner on the real stack with a verifying control-plane stand-in: no input
it generates, valid-shaped or not, may cause a 5xx, and a request that is refused creates nothing (no grant, no
tenant, no namespace).

Driven with Hypothesis directly: schemathesis' pytest plugin does not run under pytest 9."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from sqlalchemy import func, select

from devstack.servers import ThreadedServer
from provisioner.app import build_services, create_app
from provisioner.infra.models import Grant, Tenant
from provisioner.infra.settings import ProvisionerSettings
from tests.provisioner.helpers import ADMIN_TOKEN, INBOUND_KEY, SIGNALING_KEY
from tests.support.edc import cleanup

pytestmark = pytest.mark.stack


def headers_for(path: str) -> dict[str, str]:
    """The caller each surface expects, so that fuzzing reaches past authentication."""
    if path.startswith("/edc/"):
        return {"X-Api-Key": INBOUND_KEY}
    if path.startswith(("/signaling/", "/dps/")):
        return {"x-api-key": SIGNALING_KEY}
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def test_no_server_errors_and_refusals_create_nothing(make_settings: Callable[..., ProvisionerSettings]) -> None:
    config = make_settings(signaling_enabled=True, dps_enabled=True, signaling_verify_with_management=True)
    svc = build_services(config)
    app = create_app(config, services=svc)
    schema = schemathesis.openapi.from_dict(app.openapi())
    operations = [result.ok() for result in schema.get_all_operations()]
    paths = {op.path for op in operations}
    assert {"/edc/provision", "/signaling/dataflows/start", "/dps/dataflows/start", "/admin/tenants"} <= paths

    def rows() -> tuple[int, int]:
        with svc.sessions() as session:
            grants = session.scalar(select(func.count()).select_from(Grant)) or 0
            tenant_rows = session.scalar(select(func.count()).select_from(Tenant)) or 0
        return grants, tenant_rows

    accepted: list[str] = []
    try:
        with ThreadedServer(app) as server:
            for operation in operations:
                for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

                    @given(case=operation.as_strategy(generation_mode=mode))
                    @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None)
                    def check(case: schemathesis.Case) -> None:
                        before = rows()
                        response = case.call_and_validate(
                            base_url=server.url, headers=headers_for(case.path), checks=[not_a_server_error]
                        )
                        if response.status_code >= 400:
                            assert rows() == before, (case.method, case.path, response.status_code, response.text)
                        else:
                            accepted.append(f"{case.method} {case.path} {response.status_code}")

                    try:
                        check()
                    except Unsatisfiable:
                        # nothing of this operation can be made invalid (no parameters, no body): positive only
                        assert mode is GenerationMode.NEGATIVE, operation.path
        # Nothing the stand-in connector cannot verify became a tenant (namespaces are made for tenant rows only).
        assert rows()[1] == 0, accepted
    finally:
        cleanup(svc)
        svc.close()
