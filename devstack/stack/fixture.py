"""Session-scoped pytest fixture for the local stack.

Use from a conftest: ``from devstack.stack.fixture import stack  # noqa: F401``.
It starts the stack once per session, or reuses a healthy running one, and at the end stops only
the components it started itself — unless ``WML_KEEP_STACK=1`` or another test session is still
using the stack (sessions register themselves under the state dir's ``run/users/``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from .config import Layout
from .host import log
from .launcher import StackInfo, ensure_stack, stack_users, stop_stack


@pytest.fixture(scope="session")
def stack() -> Iterator[StackInfo]:
    if os.geteuid() != 0:
        if os.environ.get("CI"):  # a CI run that cannot start the stack has not tested anything: fail it
            pytest.fail("the local stack needs root, and CI must run the whole suite")
        pytest.skip("the local stack needs root")
    users = Layout().run / "users"
    users.mkdir(parents=True, exist_ok=True)
    me = users / str(os.getpid())
    me.touch()
    try:
        info = ensure_stack()
        yield info
    finally:
        me.unlink(missing_ok=True)
    if not info.started or os.environ.get("WML_KEEP_STACK") == "1":
        return
    others = stack_users(Layout())
    if others:
        log(f"leaving the stack running: other test sessions use it (pids {others})")
    else:
        stop_stack(only=info.started)
