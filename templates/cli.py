"""``workflow-templates``: validate, compile and describe WorkflowAssets."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from templates.asset import WorkflowAsset
from templates.compiler import JOB_S3_SECRET, CompileOptions, StorageTarget, compile_asset, to_json, to_yaml
from templates.jobs import S3_SESSION_TOKEN
from templates.loader import AssetError, load_file

app = typer.Typer(help="Validate and compile WorkflowAssets into Argo WorkflowTemplates.", no_args_is_help=True)
err = Console(stderr=True)


class Format(StrEnum):
    yaml = "yaml"
    json = "json"


@app.command()
def validate(files: Annotated[list[Path], typer.Argument(help="Asset files (.yaml, .json, .py).")]) -> None:
    """Check asset files; prints every problem as file: field: reason and exits 1 if there is any."""
    failed = False
    for path in files:
        try:
            asset = load_file(path)
        except AssetError as exc:
            failed = True
            for problem in exc.problems:
                err.print(f"[red]✗[/red] {problem}", markup=True, highlight=False, soft_wrap=True)
            continue
        err.print(f"[green]✓[/green] {path}: {asset.name} {asset.version}", highlight=False)
    raise typer.Exit(1 if failed else 0)


@app.command("compile")
def compile_(
    file: Annotated[Path, typer.Argument(help="Asset file (.yaml, .json, .py).")],
    namespace: Annotated[str, typer.Option(help="Namespace of the WorkflowTemplate.")] = "default",
    tenant: Annotated[str, typer.Option(help="Tenant label.")] = "",
    s3_endpoint: Annotated[str, typer.Option(help="S3 endpoint as pods reach it (host:port).")] = "minio:9000",
    bucket: Annotated[str, typer.Option(help="Bucket of the tenant's objects.")] = "workflows",
    prefix: Annotated[str, typer.Option(help="Tenant key prefix.")] = "tenants/default",
    credentials_secret: Annotated[
        str, typer.Option(help="Secret with accessKey/secretKey (default: each job's own, as compiled for tenants).")
    ] = JOB_S3_SECRET,
    session_token_key: Annotated[
        str, typer.Option(help="Key of the Secret's STS session token; empty for long-lived keys.")
    ] = S3_SESSION_TOKEN,
    insecure: Annotated[bool, typer.Option(help="Plain HTTP to S3.")] = False,
    service_account: Annotated[str, typer.Option(help="ServiceAccount of the workflow pods.")] = "wml-worker",
    output: Annotated[Format, typer.Option("--output", "-o")] = Format.yaml,
) -> None:
    """Compile one asset and print its WorkflowTemplate."""
    try:
        asset = load_file(file)
    except AssetError as exc:
        for problem in exc.problems:
            err.print(f"[red]✗[/red] {problem}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    target = StorageTarget(
        endpoint=s3_endpoint,
        bucket=bucket,
        prefix=prefix,
        credentials_secret=credentials_secret,
        session_token_key=session_token_key or None,
        insecure=insecure,
    )
    options = CompileOptions(namespace=namespace, tenant=tenant, workflow_service_account=service_account)
    manifest = compile_asset(asset, target, options).to_dict()
    typer.echo(to_yaml(manifest) if output is Format.yaml else to_json(manifest))


@app.command()
def schema() -> None:
    """Print the JSON Schema of WorkflowAsset files (for editors)."""
    typer.echo(json.dumps(WorkflowAsset.model_json_schema(by_alias=True), indent=2, sort_keys=True))


if __name__ == "__main__":
    app()
