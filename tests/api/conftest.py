"""Fixtures of the consumer-API tests: one tenant per session and a client for it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from api.client import Client
from tests.api.tenant import ApiTenant, api_tenant
from tests.support.probe import PROBE


@pytest.fixture(scope="session")
def tenant(stack) -> Iterator[ApiTenant]:
    with api_tenant(stack) as value:
        yield value


@pytest.fixture
def client(tenant: ApiTenant) -> Iterator[Client]:
    with tenant.client() as c:
        yield c


@pytest.fixture(scope="module")
def adv(stack) -> Iterator[ApiTenant]:
    """A tenant that also offers the probe asset (tests/support/probe.py)."""
    with api_tenant(stack, "adv", extra_assets=(PROBE,)) as value:
        yield value
