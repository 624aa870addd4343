"""The domain core: the WorkflowAsset model and its compilation, through Hera, into Argo WorkflowTemplates.

Imports neither ``api`` nor ``provisioner``.
"""

from templates.asset import Input, InputKind, Output, OutputKind, WorkflowAsset
from templates.compiler import CompileOptions, StorageTarget, compile_asset, template_name
from templates.jobs import job_workflow, new_job_id, resolve_env
from templates.keys import KeyLayout
from templates.loader import AssetError, load_directory, load_file, parse_document, parse_text

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
