"""``workflow-api``: serve one tenant's API, or use one as a consumer (with progress bars)."""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from api.client import Client, ClientError

app = typer.Typer(help="Workflow Middle-Layer consumer API.", no_args_is_help=True)
client_app = typer.Typer(
    help="Use a consumer API: directly (--url/--token or WML_URL/WML_TOKEN) or through the provider's EDC data "
    "plane (--edr or WML_EDR: the JSON your connector gives for the transfer).",
    no_args_is_help=True,
)
app.add_typer(client_app, name="client")
console = Console(stderr=True)


@client_app.callback()
def connect(
    ctx: typer.Context,
    url: Annotated[str | None, typer.Option("--url", envvar="WML_URL", help="API base URL.")] = None,
    token: Annotated[
        str | None, typer.Option("--token", envvar="WML_TOKEN", help="Bearer token.", show_default=False)
    ] = None,
    edr: Annotated[
        Path | None,
        typer.Option(
            "--edr",
            envvar="WML_EDR",
            help="EDR file: GET /management/v3/edrs/{transfer}/dataaddress on your connector.",
        ),
    ] = None,
) -> None:
    """Where the API is: kept here, checked when a command opens its client (so `--help` needs none)."""
    ctx.obj = Connection(url, token, edr)


@dataclass(frozen=True)
class Connection:
    url: str | None
    token: str | None
    edr: Path | None

    def client(self) -> Client:
        if self.edr is not None:
            try:
                data = json.loads(self.edr.read_text())
            except (OSError, ValueError) as exc:
                raise typer.BadParameter(f"cannot read the EDR: {exc}", param_hint="--edr") from None
            if not isinstance(data, dict) or not data.get("endpoint") or not data.get("authorization"):
                raise typer.BadParameter("the EDR needs 'endpoint' and 'authorization'", param_hint="--edr")
            return Client.through_edc(data)
        if self.url and self.token:
            return Client(self.url, self.token)
        raise typer.BadParameter("give --url and --token (or WML_URL/WML_TOKEN), or --edr (WML_EDR)")


def _connection(ctx: typer.Context) -> Connection:
    connection = ctx.find_object(Connection)
    if connection is None:  # only when a command is invoked without the `client` group's callback
        console.print("[red]error:[/red] no API connection: run this command as `workflow-api client <command>`")
        raise typer.Exit(2)
    return connection


def _client(ctx: typer.Context) -> Client:
    return _connection(ctx).client()


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8080,
) -> None:
    """Serve the API for the tenant configured by WML_API_* variables (as `workflow-api-server` does)."""
    from api.server import listen
    from api.server import serve as run

    run(listen(host, port))


def _bar() -> Progress:
    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=console,
    )


def _fail(exc: Exception) -> NoReturn:
    console.print(f"[red]error:[/red] {exc}")
    raise typer.Exit(1)


@client_app.command()
def assets(ctx: typer.Context) -> None:
    """List contracted assets."""
    with _client(ctx) as c:
        for item in c.assets():
            typer.echo(f"{item['name']}\t{item['version']}\t{item['description']}")


@client_app.command()
def upload(ctx: typer.Context, asset: str, name: str, file: Path) -> None:
    """Upload FILE as input NAME of ASSET."""
    with _client(ctx) as c, _bar() as bar:
        task = bar.add_task(f"upload {name}", total=file.stat().st_size)
        try:
            result = c.upload(asset, name, file, progress=lambda n: bar.advance(task, n))
        except ClientError as exc:
            _fail(exc)
    typer.echo(f"{result['name']}\t{result['size']}\tsha256:{result['sha256']}")
    local = hashlib.sha256()
    with file.open("rb") as handle:
        while block := handle.read(1024 * 1024):
            local.update(block)
    if local.hexdigest() != result["sha256"]:
        # e.g. EDC 0.10's data plane forwards bodies as text lines: binary files arrive changed
        _fail(RuntimeError(f"stored bytes differ from {file} (sha256 {local.hexdigest()}); upload directly"))


@client_app.command()
def start(
    ctx: typer.Context,
    asset: str,
    param: Annotated[list[str], typer.Option("--param", "-p", help="KEY=VALUE, repeatable.")] = [],  # noqa: B006
    idempotency_key: Annotated[str | None, typer.Option(help="Retry-safe key.")] = None,
) -> None:
    """Start a job; prints its id."""
    params = dict(p.split("=", 1) for p in param)
    if idempotency_key and _connection(ctx).edr is not None:
        console.print("[yellow]warning:[/yellow] EDC's data plane drops Idempotency-Key: a retry starts another job")
    with _client(ctx) as c:
        try:
            job = c.start(asset, params, idempotency_key)
        except ClientError as exc:
            _fail(exc)
    typer.echo(job["id"])


@client_app.command()
def webhook(
    ctx: typer.Context,
    url: Annotated[str | None, typer.Argument(help="Default URL for job completion events; omit to show.")] = None,
    rotate_secret: Annotated[bool, typer.Option(help="Issue a new signing secret.")] = False,
) -> None:
    """Show or register the tenant's webhook; prints its URL and signing secret (whsec_…)."""
    with _client(ctx) as c:
        try:
            if url:
                info = c.set_webhook(url, rotate_secret)
            elif rotate_secret:
                info = c.set_webhook(rotate_secret=True, keep_url=True)
            else:
                info = c.webhook()
        except ClientError as exc:
            _fail(exc)
    typer.echo(json.dumps(info, indent=2))


@client_app.command()
def wait(ctx: typer.Context, job: str, timeout: float = 1800) -> None:
    """Wait for a job to finish, showing its state; exit 1 unless COMPLETE."""
    with _client(ctx) as c, console.status(f"{job}: …") as status:
        info = c.wait(job, timeout=timeout, on_state=lambda s: status.update(f"{job}: {s}"))
    typer.echo(json.dumps(info, indent=2))
    raise typer.Exit(0 if info["state"] == "COMPLETE" else 1)


@client_app.command()
def logs(ctx: typer.Context, job: str, follow: bool = False) -> None:
    """Print a job's log (live with --follow)."""
    with _client(ctx) as c:
        for line in c.logs(job, follow=follow):
            sys.stdout.write(line + "\n")


@client_app.command()
def download(ctx: typer.Context, job: str, name: str, dest: Path = Path(".")) -> None:
    """Download output NAME of JOB into DEST (a directory or a file path)."""
    target = dest / name if dest.is_dir() else dest
    with _client(ctx) as c, _bar() as bar:
        task = bar.add_task(f"download {name}", total=None)

        def advance(n: int, total: int) -> None:
            bar.update(task, total=total or None, advance=n)

        try:
            c.download(job, name, target, progress=advance)
        except ClientError as exc:
            _fail(exc)
    typer.echo(str(target))


@client_app.command()
def jobs(ctx: typer.Context, asset: str | None = None, state: str | None = None) -> None:
    """List jobs."""
    with _client(ctx) as c:
        for item in c.jobs(asset=asset, state=state)["items"]:
            typer.echo(f"{item['id']}\t{item['asset']}\t{item['state']}")


if __name__ == "__main__":
    app()
