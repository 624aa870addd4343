"""The one way a test waits for a condition: poll a predicate until it is truthy or the deadline passes."""

from __future__ import annotations

import time
from typing import Any


def wait_for(predicate: Any, timeout: float = 60.0, interval: float = 0.1, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)
