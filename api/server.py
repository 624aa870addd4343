"""``workflow-api-server``: what a tenant's API pods run. One tenant's API (settings from ``WML_API_*``) under
uvicorn, without the consumer CLI's imports (typer, rich): a tenant pod starts sooner and idles smaller."""

from __future__ import annotations

import argparse
import sys


def serve(host: str, port: int) -> None:
    # httpx imports its own command-line client (rich, click, pygments) whenever those are installed, as they are
    # for our CLIs; the server never uses it, and it cost ~4 MiB and ~0.1 s in every tenant pod.
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    import uvicorn

    from api import observability
    from api.app import create_app
    from api.settings import ApiSettings

    # JSON lines with request ids (api.observability) instead of uvicorn's access log, which would carry query strings.
    observability.configure()
    uvicorn.run(create_app(ApiSettings()), host=host, port=port, proxy_headers=True, access_log=False, log_config=None)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="workflow-api-server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="Bind address.")
    parser.add_argument("--port", type=int, default=8080, help="Port.")
    args = parser.parse_args(argv)
    serve(args.host, args.port)


if __name__ == "__main__":
    main()
