"""The example assets, and the storage target and options the template tests compile them with."""

from __future__ import annotations

from pathlib import Path

from templates import CompileOptions, StorageTarget
from templates.compiler import JOB_S3_SECRET
from templates.jobs import S3_SESSION_TOKEN

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "templates" / "examples"
EXAMPLE_FILES = sorted(
    [*EXAMPLES.glob("*.yaml"), *(EXAMPLES / "legacy").glob("*.json"), *(EXAMPLES / "python").glob("*.py")]
)
# As the provisioner compiles: each job's own short-lived keys, in its own Secret.
TARGET = StorageTarget(
    endpoint="minio.storage:9000",
    bucket="workflows",
    prefix="tenants/t-demo",
    credentials_secret=JOB_S3_SECRET,
    session_token_key=S3_SESSION_TOKEN,
)
OPTIONS = CompileOptions(namespace="wml-t-demo", tenant="t-demo")
