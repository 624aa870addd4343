"""Python authoring: describe the worker with a Hera ``Container`` and get a WorkflowAsset.

An asset module defines ``ASSET = asset_from_container(...)``; ``workflow-templates compile file.py``
loads it and compiles it exactly like the YAML form.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hera.workflows import Container
from hera.workflows import Resources as HeraResources

from templates.asset import Gpu, Input, Limits, Output, Resources, Security, Worker, WorkflowAsset


def _quantity(value: Any) -> str | None:
    return None if value is None else str(value)


def _resources(container: Container, node_selector: dict[str, str] | None) -> Resources:
    res = container.resources
    if res is None:
        return Resources(node_selector=node_selector or {})
    if not isinstance(res, HeraResources):
        raise ValueError("worker resources: use hera.workflows.Resources, not a ResourceRequirements model")
    # Hera's Resources carries requests and limits; an asset sells one figure, the larger of both.
    cpu = _quantity(res.cpu_limit or res.cpu_request) or "1"
    memory = _quantity(res.memory_limit or res.memory_request) or "512Mi"
    storage = _quantity(res.ephemeral_limit or res.ephemeral_request)
    # Hera also takes the GPU count as a string: let pydantic coerce it, as for the YAML form.
    gpu = Gpu.model_validate({"count": res.gpus, "resource": res.gpu_flag or "nvidia.com/gpu"}) if res.gpus else None
    return Resources(cpu=cpu, memory=memory, ephemeral_storage=storage, gpu=gpu, node_selector=node_selector or {})


def asset_from_container(
    name: str,
    container: Container,
    *,
    inputs: Sequence[Input | dict[str, Any]] = (),
    outputs: Sequence[Output | dict[str, Any]] = (),
    output_dir: str | None = None,
    version: str = "1",
    description: str = "",
    limits: Limits | dict[str, Any] | None = None,
    security: Security | dict[str, Any] | None = None,
) -> WorkflowAsset:
    """Build a WorkflowAsset whose worker is ``container`` (image, command, args, workingDir, env)."""
    items = container.env or []
    if not isinstance(items, Sequence):
        raise ValueError("worker env: give a list of Env items")
    env: dict[str, str] = {}
    for item in items:
        if isinstance(item, dict):
            raise ValueError("worker env: give Env items, not dicts")
        value = getattr(item, "value", None)
        if value is None:
            raise ValueError(f"worker env {item.name!r}: only plain values are supported")
        env[item.name] = str(value)
    if container.image is None:
        raise ValueError("the worker container needs an image")
    worker = Worker(
        image=container.image,
        command=list(container.command) if container.command else None,
        args=list(container.args) if container.args else None,
        working_dir=container.working_dir,
        env=env,
        output_dir=output_dir,
    )
    return WorkflowAsset.model_validate(
        {
            "name": name,
            "version": version,
            "description": description,
            "worker": worker,
            "resources": _resources(container, container.node_selector),
            "limits": limits or Limits(),
            "security": security or Security(),
            "inputs": list(inputs),
            "outputs": list(outputs),
        }
    )
