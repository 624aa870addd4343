"""Fixtures shared by the whole suite. Servers are started in one place each:
the local stack (Kubernetes + Argo + MinIO) in tests/stack/fixture.py, the consumer API in tests/servers.py."""

from tests.stack.fixture import stack  # noqa: F401
