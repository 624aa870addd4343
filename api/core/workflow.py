"""Argo's Workflow and WorkflowTemplate as the consumer API reads them: the few fields it uses, nothing else.

Not Hera's models: importing ``hera.workflows.models`` costs a tenant API pod about a second of start-up and ~20 MiB
for the whole Argo schema, and validating every answer into that schema costs CPU on every request; the API only
reads names, labels, annotations, phases and node states. Unknown fields are ignored, so Argo may add any.
Attribute names follow Hera's (snake case of Argo's camel case), so readers did not change.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class _Argo(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)


class ObjectMeta(_Argo):
    name: str | None = None
    uid: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    creation_timestamp: datetime | None = None


class NodeStatus(_Argo):
    id: str = ""
    name: str = ""
    display_name: str | None = None
    type: str = ""
    phase: str | None = None
    message: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


class WorkflowSpec(_Argo):
    shutdown: str | None = None


class WorkflowStatus(_Argo):
    phase: str | None = None
    message: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    nodes: dict[str, NodeStatus] | None = None


class Workflow(_Argo):
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: WorkflowSpec | None = None
    status: WorkflowStatus | None = None


class ListMeta(_Argo):
    # Argo's ``continue``: a Python keyword, hence the trailing underscore (as Hera names it)
    continue_: str | None = Field(default=None, alias="continue")
    remaining_item_count: int | None = None


class WorkflowList(_Argo):
    metadata: ListMeta = Field(default_factory=ListMeta)
    items: list[Workflow] | None = None


class WorkflowTemplate(_Argo):
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)


class WorkflowTemplateList(_Argo):
    items: list[WorkflowTemplate] | None = None
