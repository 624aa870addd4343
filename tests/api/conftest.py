"""Fixtures of the consumer-API tests: one tenant per session and a client for it, and the API's S3 layer on a
prefix of its own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from api.backends.s3 import ObjectStore, make_client
from api.client import Client
from templates.keys import KeyLayout
from tests.api.tenant import ApiTenant, api_tenant
from tests.support.probe import PROBE, PROBE_RW


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
    """A tenant that also offers the probe asset and its writable-image variant (tests/support/probe.py)."""
    with api_tenant(stack, "adv", extra_assets=(PROBE, PROBE_RW)) as value:
        yield value


@pytest.fixture
def storage(stack) -> Iterator[ObjectStore]:
    """The API's S3 layer (stack MinIO, root keys) on a fresh tenant prefix, removed afterwards."""
    client = make_client(stack.s3_endpoint, stack.s3_access_key, stack.s3_secret_key, None)
    store = ObjectStore(client, stack.bucket, KeyLayout(f"tenants/t-scratch-{uuid.uuid4().hex[:8]}"))
    yield store
    store.remove_tree(store.keys.prefix)
