"""The original project's asset JSON, accepted as-is and converted with the same meaning.

Original input types: 1 = environment (dotenv → env vars), 2 = data (a file placed in ``mount_path``),
3 = data_zip (a zip unpacked into ``mount_path``). Outputs are files in ``worker_image_output_directory``.
"""

from __future__ import annotations

import posixpath
from typing import Any, cast

from pydantic import BaseModel, ConfigDict, Field, field_validator

from templates.asset import Gpu, Input, InputKind, Output, OutputKind, Resources, Security, Worker, WorkflowAsset

LEGACY_TYPES = {1: "environment", 2: "data", 3: "data_zip"}
_BY_NAME = {v: k for k, v in LEGACY_TYPES.items()}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LegacyInput(_Strict):
    resource_name: str
    type: int
    mount_path: str | None = None
    description: str = ""

    @field_validator("type", mode="before")
    @classmethod
    def _type(cls, value: Any) -> int:
        if isinstance(value, str) and value in _BY_NAME:
            return _BY_NAME[value]
        if isinstance(value, bool) or value not in LEGACY_TYPES:
            raise ValueError(f"unknown type {value!r}; use 1 (environment), 2 (data) or 3 (data_zip)")
        return cast(int, value)  # equal to a key of LEGACY_TYPES; pydantic's int validation follows


class LegacyOutput(_Strict):
    resource_name: str
    type: int | None = None
    mount_path: str | None = None
    description: str = ""


class LegacyWorkflowResource(_Strict):
    worker_image: str
    worker_image_output_directory: str = "/output/"
    worker_image_command: list[str] | str | None = None
    worker_image_args: list[str] | str | None = None
    gpu: bool | int = False


class LegacyAsset(_Strict):
    service_id: str
    description: str = ""
    inputs: list[LegacyInput] = Field(default_factory=list)
    outputs: list[LegacyOutput] = Field(default_factory=list)
    workflow_resource: LegacyWorkflowResource


def is_legacy(document: Any) -> bool:
    return isinstance(document, dict) and ("service_id" in document or "workflow_resource" in document)


def _as_list(value: list[str] | str | None) -> list[str] | None:
    if value is None or value == "":
        return None
    return [value] if isinstance(value, str) else value


def convert(legacy: LegacyAsset) -> WorkflowAsset:
    """Map the original format onto a WorkflowAsset with the same meaning."""
    res = legacy.workflow_resource
    out_dir = posixpath.normpath(res.worker_image_output_directory or "/output")
    inputs: list[Input] = []
    for item in legacy.inputs:
        kind = LEGACY_TYPES[item.type]
        if kind == "environment":
            inputs.append(Input(name=item.resource_name, kind=InputKind.ENV, description=item.description))
            continue
        mount = item.mount_path or "/data/"
        if kind == "data":
            path = mount if not mount.endswith("/") else posixpath.join(mount, item.resource_name)
            inputs.append(Input(name=item.resource_name, kind=InputKind.FILE, path=path, description=item.description))
        else:
            inputs.append(
                Input(
                    name=item.resource_name,
                    kind=InputKind.ARCHIVE,
                    format="zip",
                    path=mount,
                    description=item.description,
                )
            )
    outputs = [
        Output(
            name=item.resource_name,
            kind=OutputKind.FILE,
            path=posixpath.join(item.mount_path or out_dir, item.resource_name),
            description=item.description,
        )
        for item in legacy.outputs
    ]
    gpu = int(res.gpu)
    return WorkflowAsset(
        name=legacy.service_id,
        description=legacy.description,
        worker=Worker(
            image=res.worker_image,
            command=_as_list(res.worker_image_command),
            args=_as_list(res.worker_image_args),
            output_dir=out_dir,
        ),
        resources=Resources(gpu=Gpu(count=gpu) if gpu else None),
        # The original format ran every image as its own user with a writable filesystem: keep that meaning.
        security=Security(run_as_non_root=False, read_only_root_filesystem=False),
        inputs=inputs,
        outputs=outputs,
    )
