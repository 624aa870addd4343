"""Request and response bodies of the consumer API (and the delivery record a job detail shows as it is stored)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from api.core.states import DeliveryState, JobState


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


RESPONSE_KEPT = 512  # characters of the receiver's answer shown in the job detail


class Delivery(BaseModel):
    """The state of one job's completion event (also its public view in the job detail)."""

    model_config = ConfigDict(extra="ignore")

    url: str
    event_id: str = Field(description="The `webhook-id` of the event: the same on every attempt.")
    state: DeliveryState = DeliveryState.PENDING
    attempts: int = 0
    last_attempt_at: datetime | None = None
    next_attempt_at: datetime | None = None
    last_status: int | None = Field(default=None, description="HTTP status of the receiver's last answer.")
    last_response: str | None = Field(default=None, description=f"Its first {RESPONSE_KEPT} characters.")
    last_error: str | None = Field(default=None, description="Why the last attempt got no answer, if it did not.")
    payload: str | None = Field(default=None, exclude=True)  # the event body, fixed at the first attempt


class InputInfo(Body):
    name: str
    kind: str
    path: str | None = None
    format: str | None = None
    required: bool
    max_size: int = Field(description="Largest accepted upload in bytes.")
    description: str = ""
    keys: list[dict[str, Any]] | None = Field(default=None, description="env inputs: accepted keys.")


class OutputInfo(Body):
    name: str
    kind: str
    path: str
    required: bool
    description: str = ""


class AssetSummary(Body):
    name: str
    version: str
    description: str = ""


class AssetDetail(AssetSummary):
    image: str
    resources: dict[str, Any]
    timeout_seconds: int
    inputs: list[InputInfo]
    outputs: list[OutputInfo]


class AssetList(Body):
    items: list[AssetSummary]


class StagedInput(Body):
    name: str
    size: int
    sha256: str | None
    uploaded_at: str | None = None


class StagedInputList(Body):
    asset: str
    items: list[StagedInput]


class JobCreate(Body):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"asset": "dummy", "parameters": {"SLEEPTIME": "3"}}]},
    )

    asset: str = Field(description="Asset name.", max_length=128)
    parameters: dict[str, str] = Field(
        default_factory=dict, description="Environment values for the asset's env inputs (override uploads)."
    )
    webhook_url: str | None = Field(
        default=None,
        max_length=2048,
        description="Where this job's completion event goes (default: the tenant's webhook, `PUT /v1/webhook`). "
        "Needs a signing secret: register the tenant's webhook first.",
    )


class StepInfo(Body):
    name: str
    type: str
    phase: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    message: str | None = None
    pod: str | None = None


class Job(Body):
    id: str
    asset: str
    state: JobState
    argo_phase: str | None = None
    message: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    steps: list[StepInfo] = Field(default_factory=list)
    ui_url: str | None = None
    webhook: Delivery | None = Field(default=None, description="The completion event's delivery (job detail only).")
    cuts: dict[str, str] = Field(
        default_factory=dict,
        description="Limits the job hit once it ended, and what was cut: `log:<pod>` (the log cap), `outputs` "
        "(sealing stopped at limits.outputSize).",
    )


class JobList(Body):
    items: list[Job]
    next: str | None = Field(default=None, description="Pass as `page` to get the next page.")


class OutputFile(Body):
    name: str
    size: int
    sha256: str | None = None


class OutputList(Body):
    job: str
    items: list[OutputFile]
    missing: dict[str, str] = Field(
        default_factory=dict, description="declared outputs the job did not hand back, and why (e.g. a symlink)"
    )


class Receipt(Body):
    job: str
    run: str = Field(default="", description="the run (Workflow uid) this receipt describes")
    tenant: str
    contract_id: str
    asset: str
    asset_version: str
    image: str
    state: JobState
    resources: dict[str, Any]
    inputs: dict[str, str] = Field(description="input name → sha256")
    outputs: dict[str, str] = Field(description="output name → sha256")
    outputs_missing: dict[str, str] = Field(default_factory=dict, description="output name → why it is missing")
    cuts: dict[str, str] = Field(default_factory=dict, description="limits the job hit, as in its status")
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


class Problem(Body):
    """An RFC 9457 problem document: every error the API answers."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="stable per kind of problem: urn:workflow-middlelayer:problem:<slug>")
    status: int
    title: str
    detail: str


class WebhookUpdate(Body):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(
        default=None,
        max_length=2048,
        description="Default target of job events; null: only per-job URLs; left out: unchanged.",
    )
    rotate_secret: bool = Field(
        default=False, description="Issue a new signing secret; the old one keeps signing for a day beside it."
    )


class WebhookSettings(Body):
    url: str | None = None
    secret: str = Field(description="The current signing secret (`whsec_…`): verify `webhook-signature` with it.")
    secrets_signing: int = Field(description="How many secrets sign each event now (2 during a rotation).")


class StagedBytes(Body):
    asset: str
    bytes: int = Field(description="Inputs waiting for a job (with their upload records).")


class JobBytes(Body):
    job: str
    bytes: int = Field(
        description="The job's input snapshot, outputs, seal record, receipt, log and the executor's output archive."
    )
    has_job: bool = Field(
        description="False: its Workflow has expired or never came; DELETE /v1/jobs/{job} removes what is left."
    )


class StorageUsage(Body):
    """Everything that counts against the contract's storage quota, by what holds it."""

    quota_bytes: int
    used_bytes: int
    free_bytes: int
    staged: list[StagedBytes]
    jobs: list[JobBytes]
    other_bytes: int = Field(description="The tenant's own settings (its webhook).")
