"""Waits resume where they stopped only for the same snapshot, and a whole pass comes back every ``max_age``."""

from __future__ import annotations

from dataclasses import replace

from provisioner.core.lifecycle import Resumes
from provisioner.steps import APPLY, Snapshot

SNAP = Snapshot("t1", "wml-t1", "c1", "wml-t1", (1,), (1,), ("dummy",), "contract", ((1, "provisioning"),))
ANSWERS = next(i for i, s in enumerate(APPLY) if s.name == "answers")


def test_only_waits_after_every_context_filling_step_are_resumable() -> None:
    resumable = [s.name for s in APPLY if s.resumable]
    assert resumable == ["answers", "ready"]
    assert all(not s.resumable for s in APPLY[:ANSWERS])


def test_same_snapshot_resumes_a_changed_one_runs_whole() -> None:
    resumes = Resumes(max_age=30)
    assert resumes.start(SNAP, 0.0) == 0
    resumes.waiting(SNAP, ANSWERS, 0.0, whole=True)
    assert resumes.start(SNAP, 1.0) == ANSWERS
    suspended = replace(SNAP, grant_states=((1, "suspending"),))
    assert resumes.start(suspended, 1.0) == 0
    assert resumes.start(replace(SNAP, tenant_id="t2"), 1.0) == 0


def test_a_whole_pass_comes_back_after_max_age_and_resets_it() -> None:
    resumes = Resumes(max_age=30)
    resumes.waiting(SNAP, ANSWERS, 0.0, whole=True)
    resumes.waiting(SNAP, ANSWERS, 20.0, whole=False)  # a resumed run: the age still counts from 0
    assert resumes.start(SNAP, 29.0) == ANSWERS
    assert resumes.start(SNAP, 31.0) == 0  # whole again
    resumes.waiting(SNAP, ANSWERS, 31.0, whole=True)
    assert resumes.start(SNAP, 40.0) == ANSWERS


def test_forget() -> None:
    resumes = Resumes()
    resumes.waiting(SNAP, ANSWERS, 0.0, whole=True)
    resumes.forget("t1")
    assert resumes.start(SNAP, 1.0) == 0


def test_grant_steps_are_a_subset_that_ends_with_readiness() -> None:
    names = [s.name for s in APPLY if s.grants]
    assert names == ["s3_keys", "token", "config", "revoke", "answers", "ready"]


def test_only_grants_changed_since_a_recent_whole_pass_runs_the_grant_steps() -> None:
    resumes = Resumes(max_age=30)
    assert not resumes.grants_only(SNAP, 0.0)  # nothing settled yet: whole
    resumes.settled(SNAP, 0.0, whole=True)
    new_grant = replace(
        SNAP, grant_ids=(1, 2), active_grant_ids=(1, 2), grant_states=((1, "ready"), (2, "provisioning"))
    )
    assert resumes.grants_only(new_grant, 5.0)
    assert not resumes.grants_only(replace(new_grant, asset_names=("dummy", "other")), 5.0)  # a new asset: templates
    assert not resumes.grants_only(replace(new_grant, contract_id="other"), 5.0)  # the API's environment changes
    assert not resumes.grants_only(new_grant, 31.0)  # the whole pass is stale: whole again
    resumes.drop("t1")
    assert not resumes.grants_only(new_grant, 5.0)


def test_a_resumed_pass_keeps_the_age_of_its_whole_pass() -> None:
    resumes = Resumes(max_age=30)
    resumes.waiting(SNAP, ANSWERS, 0.0, whole=True)
    resumes.settled(SNAP, 20.0, whole=False)  # resumed at answers and went through at 20 s
    resumes.forget("t1")
    assert resumes.grants_only(replace(SNAP, grant_ids=(1, 2)), 29.0)
    assert not resumes.grants_only(replace(SNAP, grant_ids=(1, 2)), 31.0)


def test_a_wait_of_a_grants_only_run_ages_with_the_whole_pass_it_stands_on() -> None:
    resumes = Resumes(max_age=30)
    resumes.settled(SNAP, 0.0, whole=True)
    new_grant = replace(SNAP, grant_ids=(1, 2))
    resumes.waiting(new_grant, ANSWERS, 20.0, whole=False)  # a run of grants only waits at answers
    assert resumes.start(new_grant, 29.0) == ANSWERS
    assert resumes.start(new_grant, 31.0) == 0  # whole again: 31 s after the whole pass, not 11 s after the wait
