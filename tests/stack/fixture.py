"""Session-scoped pytest fixture for the local stack.

Use from a conftest: ``from tests.stack.fixture import stack  # noqa: F401``.
It starts the stack once per session, or reuses a healthy running one, and at the end stops only
the components it started itself — unless ``WML_KEEP_STACK=1``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from .launcher import StackInfo, ensure_stack, stop_stack


@pytest.fixture(scope="session")
def stack() -> Iterator[StackInfo]:
    if os.geteuid() != 0:
        pytest.skip("the local stack needs root")
    info = ensure_stack()
    try:
        yield info
    finally:
        if info.started and os.environ.get("WML_KEEP_STACK") != "1":
            stop_stack(only=info.started)
