"""Job states, named as in GA4GH TES, mapped from Argo's workflow phases.

| state          | Argo                                              |
|----------------|---------------------------------------------------|
| QUEUED         | no phase yet, or Pending                          |
| INITIALIZING   | Running, worker pod not yet started (inputs load) |
| RUNNING        | Running                                           |
| COMPLETE       | Succeeded                                         |
| EXECUTOR_ERROR | Failed (the worker failed or hit its deadline)    |
| SYSTEM_ERROR   | Error (Argo, Kubernetes or storage failed)        |
| CANCELED       | stopped or terminated on request (spec.shutdown)  |

And the states of a job's completion event (:class:`DeliveryState`), kept in its delivery record.
"""

from __future__ import annotations

from enum import StrEnum

from api.core import workflow as m


class JobState(StrEnum):
    QUEUED = "QUEUED"
    INITIALIZING = "INITIALIZING"
    RUNNING = "RUNNING"
    COMPLETE = "COMPLETE"
    EXECUTOR_ERROR = "EXECUTOR_ERROR"
    SYSTEM_ERROR = "SYSTEM_ERROR"
    CANCELED = "CANCELED"

    @property
    def finished(self) -> bool:
        return self in FINISHED


FINISHED = frozenset({JobState.COMPLETE, JobState.EXECUTOR_ERROR, JobState.SYSTEM_ERROR, JobState.CANCELED})

# Label selectors that narrow a listing by state on the server; the exact state is checked afterwards.
PHASE_SELECTOR = {
    JobState.QUEUED: "workflows.argoproj.io/phase in (Pending)",
    JobState.INITIALIZING: "workflows.argoproj.io/phase=Running",
    JobState.RUNNING: "workflows.argoproj.io/phase=Running",
    JobState.COMPLETE: "workflows.argoproj.io/phase=Succeeded",
    JobState.EXECUTOR_ERROR: "workflows.argoproj.io/phase=Failed",
    JobState.SYSTEM_ERROR: "workflows.argoproj.io/phase=Error",
    JobState.CANCELED: "workflows.argoproj.io/phase in (Failed,Error,Running)",
}


def _worker_started(workflow: m.Workflow) -> bool:
    nodes = (workflow.status.nodes if workflow.status else None) or {}
    return any(n.type == "Pod" and n.phase in {"Running", "Succeeded", "Failed", "Error"} for n in nodes.values())


def job_state(workflow: m.Workflow) -> JobState:
    phase = workflow.status.phase if workflow.status else None
    shutdown = workflow.spec.shutdown if workflow.spec else None
    if shutdown and phase in {None, "Pending", "Running", "Failed", "Error"}:
        return JobState.CANCELED
    match phase:
        case None | "" | "Pending":
            return JobState.QUEUED
        case "Running":
            return JobState.RUNNING if _worker_started(workflow) else JobState.INITIALIZING
        case "Succeeded":
            return JobState.COMPLETE
        case "Failed":
            return JobState.EXECUTOR_ERROR
        case _:
            return JobState.SYSTEM_ERROR


class DeliveryState(StrEnum):
    PENDING = "pending"  # the job has not finished, or an attempt is due
    DELIVERED = "delivered"  # the receiver answered 2xx
    FAILED = "failed"  # every attempt failed, the receiver answered 410 Gone, or the tenant removed its webhook

    @property
    def final(self) -> bool:
        return self is not DeliveryState.PENDING
