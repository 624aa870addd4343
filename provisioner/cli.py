"""``workflow-provisioner``: serve the EDC HTTP provisioner, migrate its database, inspect tenants."""

from __future__ import annotations

import logging
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from provisioner.infra.settings import ProvisionerSettings

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Listen address.")] = "0.0.0.0",
    port: Annotated[int, typer.Option(help="Listen port.")] = 8080,
    log_level: Annotated[str, typer.Option(help="Python log level.")] = "info",
) -> None:
    """Run the provisioner (migrates the database first). Settings: WML_PROVISIONER_* variables."""
    import uvicorn

    from provisioner.app import create_app

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # No access log: EDC connectors that cannot send headers put the inbound key in the path.
    uvicorn.run(create_app(ProvisionerSettings()), host=host, port=port, log_level=log_level, access_log=False)


@app.command()
def migrate(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Create or upgrade the database schema."""
    from provisioner.infra.db import make_engine
    from provisioner.infra.db import migrate as run

    settings = ProvisionerSettings()
    engine = make_engine(settings.database_url)
    run(engine, revision)
    typer.echo(f"database at {engine.url.render_as_string(hide_password=True)} is at {revision}")


@app.command()
def tenants(state: Annotated[str | None, typer.Option(help="Only tenants in this state.")] = None) -> None:
    """List tenants and their grants from the database."""
    from provisioner.infra.db import make_engine, session_factory
    from provisioner.infra.models import Grant, Tenant

    settings = ProvisionerSettings()
    sessions = session_factory(make_engine(settings.database_url))
    table = Table("tenant", "consumer", "namespace", "state", "expires", "grants")
    with sessions() as session:
        query = select(Tenant).order_by(Tenant.created_at)
        if state:
            query = query.where(Tenant.state == state)
        for tenant in session.scalars(query):
            grants = session.scalars(select(Grant).where(Grant.tenant_id == tenant.id))
            summary = ", ".join(f"{g.asset_id}:{g.state}" for g in grants)
            expires = tenant.expires_at.isoformat(timespec="seconds") if tenant.expires_at else "-"
            table.add_row(tenant.id, tenant.consumer_id, tenant.namespace, tenant.state, expires, summary)
    Console().print(table)


if __name__ == "__main__":
    app()
