"""The run plan: waits resume where they stopped only for the same snapshot, a run of grants only runs the grant
steps and what they need, a whole pass comes back every ``max_age``, and a lost key widens a run of grants."""

from __future__ import annotations

from dataclasses import replace

from provisioner.core.plan import PlanKind, Recall, RunMemory, plan_run, widen, with_producers
from provisioner.steps import APPLY, Made, Snapshot
from provisioner.steps.model import S3Keys

SNAP = Snapshot("t1", "wml-t1", "c1", "wml-t1", (1,), (1,), ("dummy",), "contract", ((1, "provisioning"),))
ANSWERS = next(i for i, s in enumerate(APPLY) if s.name == "answers")
NEW_GRANT = replace(SNAP, grant_ids=(1, 2), active_grant_ids=(1, 2), grant_states=((1, "ready"), (2, "provisioning")))


def names(plan_steps: tuple[tuple[int, object], ...]) -> list[str]:
    return [step.name for _, step in plan_steps]  # type: ignore[attr-defined]


def plan(memory: RunMemory, snap: Snapshot, now: float, force: bool = False):  # type: ignore[no-untyped-def]
    return plan_run(APPLY, snap, memory.recall(snap.tenant_id), now, force, memory.max_age)


def test_every_step_that_needs_a_product_comes_after_a_step_that_makes_it() -> None:
    for i, step in enumerate(APPLY):
        for product in step.needs:
            assert any(product in earlier.makes for earlier in APPLY[:i]), (step.name, product)


def test_producers_join_whatever_is_chosen() -> None:
    config = next(i for i, s in enumerate(APPLY) if s.name == "config")
    assert names(with_producers(APPLY, {config})) == ["s3_keys", "token", "config"]
    assert names(with_producers(APPLY, {ANSWERS})) == ["answers"]


def test_nothing_remembered_is_a_whole_pass() -> None:
    result = plan_run(APPLY, SNAP, Recall(), 0.0, False, 30.0)
    assert result.kind is PlanKind.WHOLE and names(result.steps) == [s.name for s in APPLY]


def test_same_snapshot_resumes_a_changed_one_runs_whole() -> None:
    memory = RunMemory(max_age=30)
    memory.waiting(SNAP, ANSWERS, 0.0, whole=True)
    resumed = plan(memory, SNAP, 1.0)
    assert resumed.kind is PlanKind.RESUMED and names(resumed.steps) == ["answers", "ready"]
    assert plan(memory, replace(SNAP, grant_states=((1, "suspending"),)), 1.0).kind is PlanKind.WHOLE
    assert plan(memory, replace(SNAP, tenant_id="t2"), 1.0).kind is PlanKind.WHOLE
    assert plan(memory, SNAP, 1.0, force=True).kind is PlanKind.WHOLE  # an operator's retry


def test_a_wait_at_a_step_that_needs_products_resumes_with_their_makers() -> None:
    memory = RunMemory(max_age=30)
    templates = next(i for i, s in enumerate(APPLY) if s.name == "templates")
    memory.waiting(SNAP, templates, 0.0, whole=True)
    assert names(plan(memory, SNAP, 1.0).steps) == ["token", "templates", "revoke", "answers", "ready"]


def test_a_whole_pass_comes_back_after_max_age_and_resets_it() -> None:
    memory = RunMemory(max_age=30)
    memory.waiting(SNAP, ANSWERS, 0.0, whole=True)
    memory.waiting(SNAP, ANSWERS, 20.0, whole=False)  # a resumed run: the age still counts from 0
    assert plan(memory, SNAP, 29.0).kind is PlanKind.RESUMED
    assert plan(memory, SNAP, 31.0).kind is PlanKind.WHOLE
    memory.waiting(SNAP, ANSWERS, 31.0, whole=True)
    assert plan(memory, SNAP, 40.0).kind is PlanKind.RESUMED


def test_forget() -> None:
    memory = RunMemory()
    memory.waiting(SNAP, ANSWERS, 0.0, whole=True)
    memory.forget("t1")
    assert plan(memory, SNAP, 1.0).kind is PlanKind.WHOLE


def test_grant_steps_are_the_grant_dependent_ones_and_their_makers() -> None:
    memory = RunMemory(max_age=30)
    memory.settled(SNAP, 0.0, whole=True)
    result = plan(memory, NEW_GRANT, 5.0)
    assert result.kind is PlanKind.GRANTS
    assert names(result.steps) == ["s3_keys", "token", "config", "revoke", "answers", "ready"]


def test_only_grants_changed_since_a_recent_whole_pass_runs_the_grant_steps() -> None:
    memory = RunMemory(max_age=30)
    assert plan(memory, SNAP, 0.0).kind is PlanKind.WHOLE  # nothing settled yet: whole
    memory.settled(SNAP, 0.0, whole=True)
    assert plan(memory, NEW_GRANT, 5.0).kind is PlanKind.GRANTS
    assert plan(memory, replace(NEW_GRANT, asset_names=("dummy", "other")), 5.0).kind is PlanKind.WHOLE  # templates
    assert plan(memory, replace(NEW_GRANT, contract_id="other"), 5.0).kind is PlanKind.WHOLE  # the API's environment
    assert plan(memory, NEW_GRANT, 31.0).kind is PlanKind.WHOLE  # the whole pass is stale: whole again
    memory.drop("t1")
    assert plan(memory, NEW_GRANT, 5.0).kind is PlanKind.WHOLE


def test_a_resumed_pass_keeps_the_age_of_its_whole_pass() -> None:
    memory = RunMemory(max_age=30)
    memory.waiting(SNAP, ANSWERS, 0.0, whole=True)
    memory.settled(SNAP, 20.0, whole=False)  # resumed at answers and went through at 20 s
    memory.forget("t1")
    assert plan(memory, replace(SNAP, grant_ids=(1, 2)), 29.0).kind is PlanKind.GRANTS
    assert plan(memory, replace(SNAP, grant_ids=(1, 2)), 31.0).kind is PlanKind.WHOLE


def test_a_wait_of_a_grants_only_run_ages_with_the_whole_pass_it_stands_on() -> None:
    memory = RunMemory(max_age=30)
    memory.settled(SNAP, 0.0, whole=True)
    new_grant = replace(SNAP, grant_ids=(1, 2))
    memory.waiting(new_grant, ANSWERS, 20.0, whole=False)  # a run of grants only waits at answers
    resumed = plan(memory, new_grant, 29.0)
    assert resumed.kind is PlanKind.RESUMED and resumed.grants_only and not resumed.whole
    assert plan(memory, new_grant, 31.0).kind is PlanKind.WHOLE  # 31 s after the whole pass, not 11 s after the wait


def test_a_renewed_key_widens_a_run_of_grants_to_every_later_step() -> None:
    memory = RunMemory(max_age=30)
    memory.settled(SNAP, 0.0, whole=True)
    result = plan(memory, NEW_GRANT, 5.0)
    keys = next(i for i, s in enumerate(APPLY) if s.name == "s3_keys")
    kept = Made(s3_keys=S3Keys("a", "b"))
    renewed = Made(s3_keys=S3Keys("a", "b", renewed=True))
    assert widen(APPLY, result, keys, kept) is None
    widened = widen(APPLY, result, keys, renewed)
    assert widened is not None and names(widened) == [s.name for s in APPLY[keys + 1 :]]
    assert widen(APPLY, plan(memory, SNAP, 5.0, force=True), keys, renewed) is None  # a whole pass is whole already
