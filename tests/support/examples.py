"""The example assets, and the storage target and options the template tests compile them with."""

from __future__ import annotations

from pathlib import Path

from templates import CompileOptions, StorageTarget

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "templates" / "examples"
EXAMPLE_FILES = sorted(
    [*EXAMPLES.glob("*.yaml"), *(EXAMPLES / "legacy").glob("*.json"), *(EXAMPLES / "python").glob("*.py")]
)
TARGET = StorageTarget(
    endpoint="minio.storage:9000", bucket="workflows", prefix="tenants/t-demo", credentials_secret="wml-s3"
)
OPTIONS = CompileOptions(namespace="wml-t-demo", tenant="t-demo")
