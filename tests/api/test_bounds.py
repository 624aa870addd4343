"""Issue #26 on the real stack: what a job can take of the node is bounded, and a job past a bound is stopped with a
clear state while the API and the node stay as they were.

The probe asset (tests/support/probe.py) declares 64 MiB of ephemeral storage and a 256 MiB input cap."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client as k8s

from api.client import ClientError
from devstack.stack import kube
from devstack.stack.launcher import StackInfo
from devstack.wait import wait_for
from tests.api.tenant import ApiTenant
from tests.support.attacks import tgz_bomb, zip_bomb
from tests.support.pods import wait_pods_gone

pytestmark = pytest.mark.stack

GiB = 1024**3
MiB = 1024**2

# Writes its /tmp full, slowly enough that the kubelet (which measures volumes every few seconds: the local
# stack's volumeStatsAggPeriod is 5 s) sees it long before the node's disk would: 8 MiB every 0.5 s, up to 2 GiB.
FILL = """#!/bin/sh
echo "filling $FILL_DIR"
mkdir -p "$FILL_DIR"
i=0
while [ $i -lt 256 ]; do
  dd if=/dev/zero of="$FILL_DIR/fill-$i" bs=1M count=8 2>/dev/null || { echo "write failed at $i"; break; }
  i=$((i + 1))
  sleep 0.5
done
echo "wrote $i chunks of 8 MiB"
"""


@pytest.mark.parametrize(
    ("name", "bomb", "said"),
    [("bundle.zip", zip_bomb, "unpacks to 1073741824 bytes"), ("bundle.tgz", tgz_bomb, "unpacks to more than")],
)
def test_an_archive_that_unpacks_past_the_input_cap_is_refused_at_upload(
    adv: ApiTenant, name: str, bomb: Callable[[int], bytes], said: str
) -> None:
    """A zip is judged by what its members declare (its central directory); a tar.gz has no index, so the API
    decompresses it once at upload and stops as soon as it passes the cap."""
    data = bomb(1 * GiB)
    assert len(data) < 2 * MiB  # ~1 MiB on the wire
    with adv.client() as client:
        with pytest.raises(ClientError) as refused:
            client.upload_bytes("probe", name, data)
        assert refused.value.status == 413
        assert said in str(refused.value) and "limits.inputSize" in str(refused.value)
        assert name not in {i["name"] for i in client.staged("probe")}  # nothing was stored
        with pytest.raises(ClientError) as junk:
            client.upload_bytes("probe", name, b"no archive here")
        assert junk.value.status == 422 and "input" in str(junk.value)
        small = bomb(64 * MiB)  # within the cap: taken
        assert client.upload_bytes("probe", name, small)["size"] == len(small)


@pytest.mark.parametrize(
    ("asset", "where"),
    [("probe", "/tmp"), ("probe-rw", "/var/fill")],
    ids=["tmp-volume", "writable-root-filesystem"],
)
def test_a_worker_filling_its_disk_is_stopped_at_its_bound(
    adv: ApiTenant, stack: StackInfo, asset: str, where: str
) -> None:
    """Up to 2 GiB into /tmp (an emptyDir sized by the asset), or into a writable image's own filesystem (the
    container's writable layer, bounded by its ephemeral-storage limit): stopped at 64Mi either way."""
    before = shutil.disk_usage(stack.state_dir).free
    with adv.client() as client:
        client.upload_bytes(asset, "entrypoint.sh", FILL.encode())
        client.upload_bytes(asset, "env", f"FILL_DIR={where}\n".encode())
        job: dict[str, Any] = client.wait(client.start(asset)["id"], timeout=300)
        log = "\n".join(client.logs(job["id"]))
        assert client.assets()  # the API answered throughout
    # stopped at the bound, with a state that says so: never completed, never a system error of ours
    assert job["state"] in {"EXECUTOR_ERROR", "CANCELED"} or "ephemeral" in (job.get("message") or ""), job
    assert job["state"] != "COMPLETE", (job, log)
    assert "wrote 256 chunks" not in log, log
    message = " ".join([job.get("message") or "", *[s.get("message") or "" for s in job.get("steps", [])]])
    assert "ephemeral" in message.lower() or "evict" in message.lower() or "usage" in message.lower(), job
    # the node's disk is given back (the pod and its volumes are deleted once the job's end is settled)
    api = kube.api_client(stack.kubeconfig)
    wait_pods_gone(api, adv.namespace, job["id"])
    wait_for(
        lambda: before - shutil.disk_usage(stack.state_dir).free < 100 * MiB,
        60,
        interval=1,
        what="the node's disk given back",
    )


def test_what_counts_against_the_quota_is_listed_and_deletable(adv: ApiTenant, stack: StackInfo) -> None:
    """Everything under the tenant's keys is listed by what holds it; a job whose Workflow is gone (Argo's TTL)
    is listed too, and DELETE /v1/jobs/{job} removes what it left."""
    with adv.client() as client:
        client.upload_bytes("probe", "entrypoint.sh", b"#!/bin/sh\necho kept > /output/result\n")
        job = client.wait(client.start("probe")["id"], timeout=300)["id"]
        usage = client.storage_usage()
        assert (
            usage["used_bytes"]
            == sum(s["bytes"] for s in usage["staged"]) + sum(j["bytes"] for j in usage["jobs"]) + usage["other_bytes"]
        )
        assert usage["free_bytes"] == max(0, usage["quota_bytes"] - usage["used_bytes"])
        assert any(s["asset"] == "probe" and s["bytes"] > 0 for s in usage["staged"])
        [mine] = [j for j in usage["jobs"] if j["job"] == job]
        assert mine["has_job"] and mine["bytes"] > 0
        # the Workflow goes behind the API's back (as Argo's TTL does): its keys stay, listed, and deletable
        api = kube.api_client(stack.kubeconfig)
        k8s.CustomObjectsApi(api).delete_namespaced_custom_object(
            "argoproj.io", "v1alpha1", adv.namespace, "workflows", job
        )
        wait_for(
            lambda: [j for j in client.storage_usage()["jobs"] if j["job"] == job and not j["has_job"]],
            60,
            what="the job listed without its Workflow",
        )
        client.delete(job)
        assert not [j for j in client.storage_usage()["jobs"] if j["job"] == job]
        with pytest.raises(ClientError) as gone:
            client.delete(job)
        assert gone.value.status == 404
