"""The background loops every API replica runs (webhook delivery, finishing jobs, the orphan sweep): one round,
then a pause, forever; a backend fault pauses a round, any other error is logged and the loop goes on."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from api.core.errors import BackendUnavailable

log = logging.getLogger(__name__)


async def forever(round_: Callable[[], Awaitable[Any]], interval: Callable[[], float], what: str) -> None:
    """Run ``round_`` every ``interval()`` seconds; ``what`` names the loop in its log lines."""
    while True:
        try:
            await round_()
        except BackendUnavailable as exc:
            log.warning("%s paused: %s", what, exc)
        except Exception:  # the loop must outlive any one bad record or job
            log.exception("%s round failed", what)
        await asyncio.sleep(interval())
