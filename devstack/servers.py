"""Real HTTP servers for tests: an ASGI app served by uvicorn on a free loopback port, in a thread.
The one place where the suite starts its own HTTP servers (the API, the provisioner, EDC stand-ins)."""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

# Below the kernel's ephemeral range (32768-60999) and Kubernetes' NodePorts (30000-32767): a port handed out here
# and bound a while later (an EDC connector's five ports) cannot meanwhile become the source port of some outgoing
# connection, which is what made a connector fail to bind in CI.
_PORTS = range(20000, 30000)
_handed_out: set[int] = set()
_lock = threading.Lock()


def free_port() -> int:
    """A port nothing listens on, on any address, and not handed out before by this process."""
    with _lock:
        for _ in range(200):
            port = random.choice(_PORTS)
            if port in _handed_out:
                continue
            try:
                with socket.socket() as probe:
                    probe.bind(("0.0.0.0", port))
            except OSError:
                continue
            _handed_out.add(port)
            return port
    raise RuntimeError("no free port in 20000-29999")


class ThreadedServer:
    """Serve an ASGI app on <host>:<free port> (loopback unless pods must reach it) in a background thread."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        return self

    @property
    def url(self) -> str:
        sock = self.server.servers[0].sockets[0]
        host, port = sock.getsockname()[:2]
        return f"http://{host}:{port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Serve ``app`` until the block ends; yields the base URL."""
    with ThreadedServer(app) as server:
        yield server.url
