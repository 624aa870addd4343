"""``workflow-api-server``: what a tenant's API pods run. One tenant's API (settings from ``WML_API_*``) under
uvicorn, without the consumer CLI's imports (typer, rich): a tenant pod starts sooner and idles smaller.

The port is bound before the application is imported. Kubernetes probes a starting pod once a second; a probe
that finds the port closed fails, and the pod becomes Ready only at the next probe after the import (up to a
second later). A probe that finds it open waits in the listen backlog and is answered the moment the
application serves, so a new tenant's endpoint works as soon as its API does."""

from __future__ import annotations

import argparse
import contextlib
import socket
import sys


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``; ``host`` is an address literal (IPv6 when it has a colon)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def serve(sock: socket.socket) -> None:
    # httpx imports its own command-line client (rich, click, pygments) whenever those are installed, as they are
    # for our CLIs; the server never uses it, and it cost ~4 MiB and ~0.1 s in every tenant pod.
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    import uvicorn

    from api.app import create_app
    from api.settings import ApiSettings
    from api.web import observability

    # JSON lines with request ids (api.web.observability) instead of uvicorn's access log (it would log queries).
    observability.configure()
    config = uvicorn.Config(create_app(ApiSettings()), proxy_headers=True, access_log=False, log_config=None)
    server = uvicorn.Server(config)
    # As uvicorn.run: Ctrl-C ends quietly, and a server that never started exits with uvicorn's code 3.
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets=[sock])
    if not server.started:
        sys.exit(3)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="workflow-api-server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="Bind address: an IPv4 or IPv6 literal (0.0.0.0, ::).")
    parser.add_argument("--port", type=int, default=8080, help="Port.")
    args = parser.parse_args(argv)
    serve(listen(args.host, args.port))


if __name__ == "__main__":
    main()
