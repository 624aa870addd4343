"""``workflow-api client`` against a real tenant API: the consumer's whole flow, and its argument errors."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from api.cli import app
from tests.api.tenant import ApiTenant

runner = CliRunner()


def _run(tenant: ApiTenant, *args: str) -> str:
    result = runner.invoke(app, ["client", *args], env={"WML_URL": tenant.url, "WML_TOKEN": tenant.token})
    assert result.exit_code == 0, result.output
    return result.stdout


def test_cli_runs_dummy_end_to_end(tenant: ApiTenant, tmp_path: Path) -> None:
    assert "dummy" in _run(tenant, "assets").split()
    env = tmp_path / "env"
    env.write_text("SOURCE=/etc/os-release\nDESTINATION=/output/result\nSLEEPTIME=0\n")
    assert "sha256:" in _run(tenant, "upload", "dummy", "env", str(env))
    job = _run(tenant, "start", "dummy", "-p", "SLEEPTIME=1").strip()
    assert json.loads(_run(tenant, "wait", job))["state"] == "COMPLETE"
    assert "moved /etc/os-release to /output/result" in _run(tenant, "logs", job)
    assert job in _run(tenant, "jobs", "--asset", "dummy")
    target = Path(_run(tenant, "download", job, "result", "--dest", str(tmp_path)).strip())
    assert target == tmp_path / "result" and "ID=" in target.read_text()


def test_cli_argument_errors(tenant: ApiTenant, tmp_path: Path) -> None:
    helped = runner.invoke(app, ["client", "upload", "--help"], env={"WML_URL": "", "WML_TOKEN": "", "WML_EDR": ""})
    assert helped.exit_code == 0 and "Upload FILE" in helped.stdout  # help needs no connection
    missing = runner.invoke(app, ["client", "assets"], env={"WML_URL": "", "WML_TOKEN": "", "WML_EDR": ""})
    assert missing.exit_code == 2 and "--edr" in missing.output
    bad = tmp_path / "edr.json"
    bad.write_text(json.dumps({"endpoint": "http://127.0.0.1:9/public"}))
    result = runner.invoke(app, ["client", "--edr", str(bad), "assets"])
    assert result.exit_code == 2 and "authorization" in result.output
    wrong = runner.invoke(app, ["client", "--url", tenant.url, "--token", "nope", "upload", "dummy", "env", str(bad)])
    assert wrong.exit_code == 1 and "401" in wrong.output
