"""Argo Server's JSON, as it answers, read into the consumer API's models (api/workflow.py): camelCase names,
timestamps, the list's ``continue`` token, nodes, and fields the API does not know (ignored)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from api.core.states import JobState, job_state
from api.core.workflow import Workflow, WorkflowList, WorkflowTemplateList

WORKFLOW = {
    "metadata": {
        "name": "job-0123456789abcdef",
        "namespace": "wml-t1",
        "uid": "6b1c7b1e-0000-4000-8000-000000000001",
        "creationTimestamp": "2026-12-02T13:04:49Z",
        "labels": {"workflows.argoproj.io/phase": "Running"},
        "annotations": {"workflow-middlelayer.io/asset-name": "dummy"},
        "managedFields": [{"manager": "workflow-controller"}],
    },
    "spec": {"workflowTemplateRef": {"name": "wml-dummy"}, "shutdown": "Terminate"},
    "status": {
        "phase": "Running",
        "startedAt": "2026-12-02T13:04:50Z",
        "finishedAt": None,
        "progress": "0/1",
        "nodes": {
            "job-0123456789abcdef-1": {
                "id": "job-0123456789abcdef-1",
                "name": "job-0123456789abcdef.worker",
                "displayName": "worker",
                "type": "Pod",
                "phase": "Running",
                "startedAt": "2026-12-02T13:04:51+00:00",
                "hostNodeName": "node-1",
            }
        },
    },
}


def test_a_workflow_as_argo_sends_it() -> None:
    wf = Workflow.model_validate_json(json.dumps(WORKFLOW))
    assert wf.metadata.name == "job-0123456789abcdef" and wf.metadata.uid
    assert wf.metadata.creation_timestamp == datetime(2026, 12, 2, 13, 4, 49, tzinfo=UTC)
    assert wf.metadata.annotations == {"workflow-middlelayer.io/asset-name": "dummy"}
    assert wf.status is not None and wf.status.finished_at is None
    node = (wf.status.nodes or {})["job-0123456789abcdef-1"]
    assert (node.display_name, node.type, node.phase) == ("worker", "Pod", "Running")
    assert node.started_at == datetime(2026, 12, 2, 13, 4, 51, tzinfo=UTC)
    assert job_state(wf) is JobState.CANCELED  # spec.shutdown read from its camelCase place


def test_a_list_page_with_its_continue_token_and_a_fields_filtered_list() -> None:
    page = WorkflowList.model_validate_json(
        json.dumps({"metadata": {"continue": "20", "remainingItemCount": "3"}, "items": [WORKFLOW]})
    )
    assert page.metadata.continue_ == "20" and page.metadata.remaining_item_count == 3
    assert page.items is not None and page.items[0].metadata.name == "job-0123456789abcdef"
    # `fields=items.metadata.name,items.metadata.uid`: no spec, no status
    filtered = WorkflowList.model_validate_json(json.dumps({"items": [{"metadata": {"name": "a", "uid": "u"}}]}))
    assert [(w.metadata.name, w.status) for w in filtered.items or []] == [("a", None)]
    assert WorkflowList.model_validate_json('{"metadata": {}, "items": null}').items is None


def test_templates_keep_their_annotations() -> None:
    listed = WorkflowTemplateList.model_validate_json(
        json.dumps({"items": [{"metadata": {"name": "wml-dummy", "annotations": {"a": "b"}}, "spec": {"x": 1}}]})
    )
    assert [(t.metadata.name, t.metadata.annotations) for t in listed.items or []] == [("wml-dummy", {"a": "b"})]
