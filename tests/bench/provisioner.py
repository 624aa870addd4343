"""Provision request → callback time (goal ≤ 2 s warm)."""

from tests.provisioner.bench import run

__all__ = ["run"]
