"""A consumer connector's HTTP event receiver: EDC posts transfer events to it (the started one carries the
endpoint and token the provider's data plane answered). EDC may deliver an event twice."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request

from devstack.servers import ThreadedServer


@dataclass
class Events:
    received: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/events")
        async def event(request: Request) -> dict[str, str]:
            body = await request.json()
            with self.lock:
                self.received.append(body)
            return {"ok": "yes"}

        return app

    @contextmanager
    def serve(self) -> Iterator[str]:
        """Receive events until the block ends; yields the URL to register as the transfer's callback."""
        with ThreadedServer(self.app()) as server:
            yield f"{server.url}/events"

    def of(self, kind: str, process: str) -> list[dict[str, Any]]:
        with self.lock:
            return [
                e
                for e in self.received
                if e.get("type") == kind and (e.get("payload") or {}).get("transferProcessId") == process
            ]

    def started(self, process: str) -> dict[str, Any] | None:
        found = self.of("TransferProcessStarted", process)
        return found[0] if found else None
