"""The domain core: the WorkflowAsset model and its compilation, through Hera, into Argo WorkflowTemplates.

Imports neither ``api`` nor ``provisioner``. The compiler (and Hera with it) is imported on first use of its
names: the consumer API reads assets and starts jobs but never compiles, and each tenant API pod starts faster and
smaller without Hera's Argo schema.
"""

from typing import TYPE_CHECKING, Any

from templates.asset import Input, InputKind, Output, OutputKind, WorkflowAsset
from templates.jobs import job_workflow, new_job_id, resolve_env
from templates.keys import KeyLayout
from templates.loader import AssetError, load_directory, load_file, parse_document, parse_text
from templates.names import template_name

if TYPE_CHECKING:
    from templates.compiler import CompileOptions, StorageTarget, compile_asset

_COMPILER = frozenset({"CompileOptions", "StorageTarget", "compile_asset"})


def __getattr__(name: str) -> Any:
    if name in _COMPILER:
        from templates import compiler

        return getattr(compiler, name)
    raise AttributeError(f"module 'templates' has no attribute {name!r}")


__all__ = [
    "AssetError",
    "CompileOptions",
    "Input",
    "InputKind",
    "KeyLayout",
    "Output",
    "OutputKind",
    "StorageTarget",
    "WorkflowAsset",
    "compile_asset",
    "job_workflow",
    "load_directory",
    "load_file",
    "new_job_id",
    "parse_document",
    "parse_text",
    "resolve_env",
    "template_name",
]
