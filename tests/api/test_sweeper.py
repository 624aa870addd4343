"""Leftovers of a job start that never became a Workflow are removed; nothing of a job that exists or ran is."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from kubernetes import client as k8s
from minio import Minio

from api.client import FINISHED
from devstack.stack import kube
from devstack.stack.launcher import StackInfo
from devstack.wait import wait_for
from templates.jobs import env_secret_name
from tests.api.tenant import api_tenant

pytestmark = pytest.mark.stack

SLOW = b"SOURCE=/etc/os-release\nDESTINATION=/output/result\nSLEEPTIME=60\n"
QUICK = b"SOURCE=/etc/os-release\nDESTINATION=/output/result\nSLEEPTIME=0\n"
GRACE = 3


def test_leftovers_of_failed_starts_go_jobs_stay(stack: StackInfo, tmp_path: Path) -> None:
    s3 = Minio(stack.s3_host, stack.s3_access_key, stack.s3_secret_key, secure=False)
    api = kube.api_client(stack.kubeconfig)
    core, custom = k8s.CoreV1Api(api), k8s.CustomObjectsApi(api)
    with api_tenant(stack, "sweep", orphan_grace_seconds=GRACE, orphan_sweep_interval_seconds=1) as tenant:
        keys = tenant.settings.keys

        def objects(job: str) -> list[str]:
            found = s3.list_objects(stack.bucket, prefix=f"{keys.job(job)}/", recursive=True)
            return [o.object_name or "" for o in found]

        def put(key: str) -> None:
            s3.put_object(stack.bucket, key, io.BytesIO(b"left"), 4)

        with tenant.client() as client:
            # a job that ran, whose Workflow is gone since (as Argo's TTL removes it): its results stay
            client.upload_bytes("dummy", "env", QUICK)
            done = client.wait(client.start("dummy")["id"], timeout=300)
            assert done["state"] == "COMPLETE", done
            assert client.download(done["id"], "result", tmp_path / "result").read_bytes()  # sealed now
            custom.delete_namespaced_custom_object("argoproj.io", "v1alpha1", tenant.namespace, "workflows", done["id"])
            # a job that is running: a Workflow, nothing from the executor yet
            client.upload_bytes("dummy", "env", SLOW)
            running = client.start("dummy")["id"]
            put(f"{keys.job_input(running, 'data')}/a.txt")
            # what a start leaves when Argo never got its Workflow: inputs, a webhook record, the env Secret
            orphan = "job-0123456789abcdef"
            put(f"{keys.job_input(orphan, 'data')}/a.txt")
            put(keys.job_webhook(orphan))
            core.create_namespaced_secret(
                tenant.namespace,
                k8s.V1Secret(metadata=k8s.V1ObjectMeta(name=env_secret_name(orphan)), string_data={"A": "1"}),
            )
            kept = {job: sorted(objects(job)) for job in (done["id"], running)}
            assert all(kept.values()), kept

            wait_for(lambda: not objects(orphan), 60, what="the leftovers swept")
            secrets = {s.metadata.name for s in core.list_namespaced_secret(tenant.namespace).items if s.metadata}
            assert env_secret_name(orphan) not in secrets
            time.sleep(GRACE + 3)  # more passes, every job now past the grace period
            assert {job: sorted(objects(job)) for job in kept} == kept
            assert client.job(running)["state"] not in FINISHED  # still going: swept would have been wrong
            client.cancel(running)
