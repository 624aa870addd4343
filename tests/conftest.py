"""Fixtures shared by the whole suite, and its tiers.

Servers are started in one place each: the local stack (Kubernetes + Argo + MinIO) in devstack/stack/fixture.py, the
consumer API in devstack/servers.py. Tiers are derived, not hand-kept: a test whose fixtures reach ``stack`` is marked
``stack``; one whose fixtures reach ``argo_schema`` (Argo's schema from its Go module) is marked ``go``.
``make test-fast`` runs the rest: no stack, no Go.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from devstack.stack.config import REPO_ROOT, Layout
from devstack.stack.fixture import stack  # noqa: F401

# fixture name -> the marker every test that (transitively) uses it gets
TIER_FIXTURES = {"stack": "stack", "argo_schema": "go", "kustomize": "go", "argo_src": "go"}


@pytest.fixture(scope="session")
def kustomize() -> Path:
    """The real kustomize, built from its Go module by ``devstack/stack/build.sh`` (``make test`` builds it)."""
    path = Layout().kustomize_bin
    assert path.is_file(), f"{path} missing: run devstack/stack/build.sh kustomize"
    return path


@pytest.fixture(scope="session")
def argo_src() -> Path:
    """The pinned Argo Workflows module's source (Go module cache), as ``devstack/stack/build.sh`` fetched it."""
    out = subprocess.run(
        [str(REPO_ROOT / "devstack" / "stack" / "build.sh"), "paths"], check=True, capture_output=True, text=True
    ).stdout
    return Path(next(line.split("=", 1)[1] for line in out.splitlines() if line.startswith("ARGO_SRC=")))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        for fixture, marker in TIER_FIXTURES.items():
            if fixture in names:
                item.add_marker(getattr(pytest.mark, marker))
