"""Name and S3 key rules: what a consumer can name never leaves its place."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.services.staging import check_relative_path
from templates.jobs import JOB_ID, env_secret_name, new_job_id
from templates.keys import KeyLayout
from templates.names import check_safe_name

KEYS = KeyLayout("tenants/t-1")


@pytest.mark.parametrize("bad", ["", ".", "..", "../x", "a/b", "/abs", "x\x00", ".hidden", "a" * 300, "abc\n"])
def test_unsafe_names_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        check_safe_name(bad)


@pytest.mark.parametrize("bad", ["", "/x", "a//b", "a/../b", "a/./b", "x/\x00", "a\n/b", "a/b\n"])
def test_unsafe_relative_paths_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        check_relative_path(bad)


@given(st.text(min_size=1, max_size=40))
def test_every_accepted_name_stays_under_its_prefix(name: str) -> None:
    try:
        safe = check_safe_name(name)
    except ValueError:
        return
    for key in (KEYS.staging("dummy", safe), KEYS.job_input("job-1", safe), KEYS.job_output("job-1", safe)):
        assert key.startswith("tenants/t-1/") and "/../" not in f"/{key}/" and "//" not in key


def test_layout_of_one_job() -> None:
    assert KEYS.job_outputs_archive("job-1") == "tenants/t-1/exec/job-1/outputs.tgz"  # the executor's own prefix
    # stored by the API from the kubelet, never by the executor: under the job's own keys, not exec/
    assert KEYS.job_logs("job-1") == "tenants/t-1/jobs/job-1/logs"
    assert KEYS.job_log_archive("job-1", "job-1-worker-1") == "tenants/t-1/jobs/job-1/logs/job-1-worker-1.log"
    assert KEYS.executor_glob_of("job-1") == "tenants/t-1/exec/job-1/*"
    assert KEYS.job_inputs_glob_of("job-1") == "tenants/t-1/jobs/job-1/inputs/*"
    assert KEYS.job_output("job-1", "tree", directory=True) == "tenants/t-1/jobs/job-1/outputs/tree.tgz"
    assert KEYS.job_seal("job-1") == "tenants/t-1/jobs/job-1/sealed.json"
    assert KEYS.job_receipt("job-1") == "tenants/t-1/jobs/job-1/receipt.json"
    with pytest.raises(ValueError):
        KeyLayout("tenants/../other")


def test_job_ids_are_fixed_shape_and_name_their_env_secret() -> None:
    job = new_job_id()
    assert JOB_ID.match(job) and env_secret_name(job) == f"{job}-env"
    assert not JOB_ID.match("job-../../x") and not JOB_ID.match("JOB-ABC12345")
