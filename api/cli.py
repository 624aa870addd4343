"""``workflow-api``: serve one tenant's API, or use one as a consumer (with progress bars)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from api.client import ApiError, Client

app = typer.Typer(help="Workflow Middle-Layer consumer API.", no_args_is_help=True)
client_app = typer.Typer(help="Use a consumer API (base URL and token from options or WML_URL/WML_TOKEN).")
app.add_typer(client_app, name="client")
console = Console(stderr=True)

Url = Annotated[str, typer.Option("--url", envvar="WML_URL", help="API base URL.")]
Token = Annotated[str, typer.Option("--token", envvar="WML_TOKEN", help="Bearer token.", show_default=False)]


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8080,
) -> None:
    """Serve the API for the tenant configured by WML_API_* variables."""
    import uvicorn

    from api.app import create_app
    from api.settings import ApiSettings

    uvicorn.run(create_app(ApiSettings()), host=host, port=port, log_level="info", proxy_headers=True)


def _bar() -> Progress:
    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=console,
    )


def _fail(exc: Exception) -> None:
    console.print(f"[red]error:[/red] {exc}")
    raise typer.Exit(1)


@client_app.command()
def assets(url: Url, token: Token) -> None:
    """List contracted assets."""
    with Client(url, token) as c:
        for item in c.assets():
            typer.echo(f"{item['name']}\t{item['version']}\t{item['description']}")


@client_app.command()
def upload(asset: str, name: str, file: Path, url: Url, token: Token) -> None:
    """Upload FILE as input NAME of ASSET."""
    with Client(url, token) as c, _bar() as bar:
        task = bar.add_task(f"upload {name}", total=file.stat().st_size)
        try:
            result = c.upload(asset, name, file, progress=lambda n: bar.advance(task, n))
        except ApiError as exc:
            _fail(exc)
    typer.echo(f"{result['name']}\t{result['size']}\tsha256:{result['sha256']}")


@client_app.command()
def start(
    asset: str,
    url: Url,
    token: Token,
    param: Annotated[list[str], typer.Option("--param", "-p", help="KEY=VALUE, repeatable.")] = [],  # noqa: B006
    idempotency_key: Annotated[str | None, typer.Option(help="Retry-safe key.")] = None,
) -> None:
    """Start a job; prints its id."""
    params = dict(p.split("=", 1) for p in param)
    with Client(url, token) as c:
        try:
            job = c.start(asset, params, idempotency_key)
        except ApiError as exc:
            _fail(exc)
    typer.echo(job["id"])


@client_app.command()
def wait(job: str, url: Url, token: Token, timeout: float = 1800) -> None:
    """Wait for a job to finish, showing its state; exit 1 unless COMPLETE."""
    with Client(url, token) as c, console.status(f"{job}: …") as status:
        info = c.wait(job, timeout=timeout, on_state=lambda s: status.update(f"{job}: {s}"))
    typer.echo(json.dumps(info, indent=2))
    raise typer.Exit(0 if info["state"] == "COMPLETE" else 1)


@client_app.command()
def logs(job: str, url: Url, token: Token, follow: bool = False) -> None:
    """Print a job's log (live with --follow)."""
    with Client(url, token) as c:
        for line in c.logs(job, follow=follow):
            sys.stdout.write(line + "\n")


@client_app.command()
def download(job: str, name: str, url: Url, token: Token, dest: Path = Path(".")) -> None:
    """Download output NAME of JOB into DEST (a directory or a file path)."""
    target = dest / name if dest.is_dir() else dest
    with Client(url, token) as c, _bar() as bar:
        task = bar.add_task(f"download {name}", total=None)

        def advance(n: int, total: int) -> None:
            bar.update(task, total=total or None, advance=n)

        try:
            c.download(job, name, target, progress=advance)
        except ApiError as exc:
            _fail(exc)
    typer.echo(str(target))


@client_app.command()
def jobs(url: Url, token: Token, asset: str | None = None, state: str | None = None) -> None:
    """List jobs."""
    with Client(url, token) as c:
        for item in c.jobs(asset=asset, state=state)["items"]:
            typer.echo(f"{item['id']}\t{item['asset']}\t{item['state']}")


if __name__ == "__main__":
    app()
