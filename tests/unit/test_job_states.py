"""Argo's workflow phases mapped to the documented job states (GA4GH TES names)."""

from __future__ import annotations

from typing import Any

import pytest

from api.core import workflow as m
from api.core.states import FINISHED, JobState, job_state


def workflow(phase: str | None, shutdown: str | None = None, pod_phase: str | None = None) -> m.Workflow:
    nodes: dict[str, Any] = {}
    if pod_phase:
        nodes["n1"] = m.NodeStatus(id="n1", name="n1", type="Pod", phase=pod_phase)
    return m.Workflow(
        metadata=m.ObjectMeta(name="job-0123456789abcdef"),
        spec=m.WorkflowSpec(shutdown=shutdown),
        status=m.WorkflowStatus(phase=phase, nodes=nodes or None),
    )


@pytest.mark.parametrize(
    "phase,shutdown,pod,state",
    [
        (None, None, None, JobState.QUEUED),
        ("Pending", None, None, JobState.QUEUED),
        ("Running", None, None, JobState.INITIALIZING),
        ("Running", None, "Pending", JobState.INITIALIZING),
        ("Running", None, "Running", JobState.RUNNING),
        ("Succeeded", None, "Succeeded", JobState.COMPLETE),
        ("Failed", None, "Failed", JobState.EXECUTOR_ERROR),
        ("Error", None, "Error", JobState.SYSTEM_ERROR),
        ("Running", "Terminate", "Running", JobState.CANCELED),
        ("Failed", "Stop", None, JobState.CANCELED),
        ("Succeeded", "Terminate", None, JobState.COMPLETE),  # finished before the cancel arrived
    ],
)
def test_phase_mapping(phase: str | None, shutdown: str | None, pod: str | None, state: JobState) -> None:
    assert job_state(workflow(phase, shutdown, pod)) is state


def test_finished_states() -> None:
    assert (
        {s for s in JobState if s.finished}
        == FINISHED
        == {
            JobState.COMPLETE,
            JobState.EXECUTOR_ERROR,
            JobState.SYSTEM_ERROR,
            JobState.CANCELED,
        }
    )
