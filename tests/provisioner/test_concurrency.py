"""Many concurrent, retried requests: exactly one tenant per consumer, one grant per request."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import httpx
import pytest
from sqlalchemy import func, select

from provisioner.app import PROVISION_PATH
from provisioner.infra.models import Grant, GrantState, Tenant
from provisioner.infra.services import Services
from tests.provisioner.helpers import INBOUND_KEY, db_grants
from tests.provisioner.servers import EdcStub, wait_for
from tests.support.edc import edc_request, new_consumer, tenant_of

pytestmark = pytest.mark.stack


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_100_concurrent_retried_requests_for_10_consumers(
    provisioner: str, services: Services, edc: tuple[EdcStub, str]
) -> None:
    stub, edc_url = edc
    consumers = [new_consumer() for _ in range(10)]
    bodies = []
    for i, consumer in enumerate(consumers):
        for _ in range(5):
            # half the consumers are named by the policy, the others only by the management API
            body = edc_request(consumer=consumer if i % 2 else None, callback=f"{edc_url}/management/callback")
            stub.register(body["transferProcessId"], consumer, "dummy")  # the connector's record decides
            bodies.append(body)
    requests = [b for b in bodies for _ in range(2)]  # every request arrives twice (EDC retries)
    random.Random(5).shuffle(requests)
    assert len(requests) == 100

    async def fire() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(base_url=provisioner, timeout=60, limits=limits) as client:
            headers = {"X-Api-Key": INBOUND_KEY}
            return await asyncio.gather(*(client.post(PROVISION_PATH, json=b, headers=headers) for b in requests))

    responses = asyncio.run(fire())
    assert Counter(r.status_code for r in responses) == {201: 50, 200: 50}

    wait_for(lambda: len(stub.provisions()) >= 50, 240, interval=0.5, what="50 callbacks")
    with services.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Tenant)) == 10
        assert session.scalar(select(func.count()).select_from(Grant)) == 50
    assert sorted(t for t in (tenant_of(c) for c in consumers)) == sorted({g.tenant_id for g in db_grants(services)})
    assert all(g.state == GrantState.PROVISIONED for g in db_grants(services))
    per_transfer = Counter(c.transfer_process_id for c in stub.provisions())
    assert set(per_transfer.values()) == {1} and len(per_transfer) == 50
    tokens: dict[str, set[str]] = {}
    for call in stub.provisions():
        tokens.setdefault(call.body["resourceName"].split("-")[3], set()).add(call.body["apiKeyJwt"])
    assert len(tokens) == 10 and all(len(t) == 5 for t in tokens.values())  # one token per grant
    namespaces = {tenant_of(c) for c in consumers}
    for tenant in namespaces:
        assert services.kube.get("v1", "Namespace", services.settings.namespace_for(tenant)) is not None
