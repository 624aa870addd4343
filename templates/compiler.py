"""Compilation of a WorkflowAsset, through Hera, into an Argo WorkflowTemplate.

The template is self-contained: every artifact names its S3 endpoint, bucket, key and credentials
Secret, so nothing depends on Argo's global default artifact repository.

What a job pod's worker can reach is shaped here (threat model: docs/architecture.md). Argo's wait container
shares ``/var/run/argo`` (world-writable) with the worker and follows symlinks in it, so it must read nothing
there that matters: logs are not archived by Argo (the API stores the kubelet's copy, see
api.services.finishing), the controller signals the wait container with the executor image's own binary (not
the shared copy), its Kubernetes token is projected, bound to the pod and short-lived, and its S3 keys are the
job's own (minted per job by the API, revoked when the job ends).

The asset itself travels with the template as an annotation, which makes a registered template the single source
of truth for the consumer API.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import yaml
from hera.workflows import (
    Container,
    EmptyDirVolume,
    Env,
    NoneArchiveStrategy,
    Resources,
    RetryStrategy,
    S3Artifact,
    TarArchiveStrategy,
    WorkflowTemplate,
    ZipArchiveStrategy,
)
from hera.workflows import models as m

from templates.asset import Input, InputKind, Output, WorkflowAsset
from templates.keys import JOB_NAME_PLACEHOLDER, KeyLayout
from templates.labels import (
    ANNOTATION_ASSET,
    ANNOTATION_ASSET_NAME,
    ANNOTATION_NAMES,
    GROUP,
    LABEL_ASSET,
    LABEL_MANAGED_BY,
    LABEL_TENANT,
    MANAGER,
)
from templates.names import ENV_SECRET_SUFFIX, S3_SECRET_SUFFIX, argo_name, dns_label, template_name
from templates.quantity import parse_quantity

WORKER_TEMPLATE = "worker"
OUTPUT_VOLUME = "wml-output"
OUTPUTS_ARTIFACT = "wml-outputs"
TMP_VOLUME = "wml-tmp"
# A job's consumer-supplied environment lives in this Secret (made by the API, owned by the Workflow): the values
# never pass through Argo's template engine, only this name does, and the job name is ours.
ENV_SECRET_NAME = JOB_NAME_PLACEHOLDER + ENV_SECRET_SUFFIX
# The job's own S3 keys: what a storage target's ``credentials_secret`` is for compiled templates.
JOB_S3_SECRET = JOB_NAME_PLACEHOLDER + S3_SECRET_SUFFIX
# Argo 4.0.x signals a container by exec'ing /var/run/argo/argoexec in it: a file the worker can replace (the
# volume is world-writable), which would run the worker's code in the wait container with its credentials
# (fixed upstream in 4.1.0). This annotation makes the controller exec the executor image's own binary instead.
KILL_CMD_WAIT = "workflows.argoproj.io/kill-cmd-wait"
EXECUTOR_BINARY = "/bin/argoexec"
# Argo mounts the executor's token from a Secret (a legacy token: no expiry, valid as long as the tenant). The
# patch replaces that volume with a projected token: bound to the pod (dead once the pod is deleted, which the
# API does as soon as the job's log is stored) and short-lived (kubelet refreshes it while the pod runs).
EXEC_TOKEN_VOLUME = "exec-sa-token"
EXEC_TOKEN_SECONDS = 600  # the shortest Kubernetes allows


@dataclass(frozen=True)
class StorageTarget:
    """Where a tenant's objects live and how pods reach them."""

    endpoint: str  # host:port as pods reach it, no scheme
    bucket: str
    prefix: str  # tenant prefix, e.g. "tenants/t-3f9a"
    credentials_secret: str  # Secret in the tenant namespace with the two keys below
    access_key_key: str = "accessKey"
    secret_key_key: str = "secretKey"
    session_token_key: str | None = None  # set for short-lived (STS) keys, as each job's own are
    insecure: bool = False
    region: str | None = None

    @property
    def keys(self) -> KeyLayout:
        return KeyLayout(self.prefix)


@dataclass(frozen=True)
class CompileOptions:
    namespace: str
    tenant: str = ""
    workflow_service_account: str = "wml-worker"
    # A backstop only: the API deletes a finished job's pods once it has stored their logs.
    pod_gc_delay: str = "10m"
    executor_binary: str = EXECUTOR_BINARY
    tmp_size: str = "1Gi"  # the worker's /tmp when the asset names no ephemeral storage
    ttl_seconds_after_completion: int = 7 * 24 * 3600
    image_pull_policy: str = "IfNotPresent"
    extra_labels: dict[str, str] = field(default_factory=dict)


class _S3Artifact(S3Artifact):
    """Hera 7.1.0's S3Artifact drops ``session_token_secret`` when it builds Argo's model (its ``_build_artifact``
    copies every other field); each job's own keys are STS keys and need it."""

    def _build_artifact(self) -> m.Artifact:
        artifact = super()._build_artifact()
        if artifact.s3 is not None and self.session_token_secret is not None:
            artifact.s3.session_token_secret = self.session_token_secret
        return artifact


def _s3(target: StorageTarget, name: str, key: str, **kwargs: Any) -> S3Artifact:
    return _S3Artifact(
        name=name,
        key=key,
        endpoint=target.endpoint,
        bucket=target.bucket,
        insecure=target.insecure,
        region=target.region,
        access_key_secret=m.SecretKeySelector(name=target.credentials_secret, key=target.access_key_key),
        secret_key_secret=m.SecretKeySelector(name=target.credentials_secret, key=target.secret_key_key),
        session_token_secret=m.SecretKeySelector(name=target.credentials_secret, key=target.session_token_key)
        if target.session_token_key
        else None,
        **kwargs,
    )


def _input_artifact(item: Input, target: StorageTarget) -> S3Artifact | None:
    key = target.keys.job_input(JOB_NAME_PLACEHOLDER, item.name)
    common = {"path": item.path, "optional": not item.required}
    match item.kind:
        case InputKind.ENV:
            return None  # values are passed as env vars through the pod-spec patch
        case InputKind.FILE | InputKind.DIRECTORY:
            # 'none' keeps a file a file: no tarball auto-detection on what the consumer uploaded.
            return _s3(target, argo_name(item.name), key, archive=NoneArchiveStrategy(), **common)
        case InputKind.ARCHIVE:
            archive = ZipArchiveStrategy() if item.format == "zip" else TarArchiveStrategy()
            return _s3(target, argo_name(item.name), key, archive=archive, **common)
    raise AssertionError(item.kind)


def _resources(asset: WorkflowAsset) -> Resources:
    res = asset.resources
    return Resources(
        cpu_request=res.cpu,
        cpu_limit=res.cpu,
        memory_request=res.memory,
        memory_limit=res.memory,
        ephemeral_request=res.ephemeral_storage,
        ephemeral_limit=res.ephemeral_storage,
        gpus=res.gpu.count if res.gpu else None,
        gpu_flag=res.gpu.resource if res.gpu else None,
    )


NOBODY = 65534


def _security(asset: WorkflowAsset) -> tuple[m.PodSecurityContext, m.SecurityContext]:
    sec = asset.security
    # runAsNonRoot alone fails on images whose user is root or a name; nobody is the safe default.
    user = sec.run_as_user if sec.run_as_user is not None else (NOBODY if sec.run_as_non_root else None)
    pod = m.PodSecurityContext(
        run_as_non_root=sec.run_as_non_root or None,
        run_as_user=user,
        run_as_group=sec.run_as_group,
        fs_group=sec.run_as_group,
        seccomp_profile=m.SeccompProfile(type="RuntimeDefault"),
    )
    container = m.SecurityContext(
        allow_privilege_escalation=False,
        privileged=False,
        capabilities=m.Capabilities(drop=["ALL"]),
        read_only_root_filesystem=sec.read_only_root_filesystem or None,
        run_as_non_root=sec.run_as_non_root or None,
    )
    return pod, container


def _labels(asset: WorkflowAsset, options: CompileOptions) -> dict[str, str]:
    labels = {LABEL_MANAGED_BY: MANAGER, LABEL_ASSET: dns_label(asset.name)}
    if options.tenant:
        labels[LABEL_TENANT] = dns_label(options.tenant)
    return {**labels, **options.extra_labels}


# Argo's own emptyDirs have no size limit: a worker could fill the node's disk through them. Capped here by name
# (a strategic merge patch on the volumes Argo adds): the shared /var/run/argo (argoexec itself, ~110 MiB, and
# the executor's small files), the wait container's staging of the output archive, and the inputs as downloaded
# and unpacked.
ARGO_RUN_VOLUME, ARGO_TMP_VOLUME, ARGO_INPUTS_VOLUME = "var-run-argo", "tmp-dir-argo", "input-artifacts"
ARGO_RUN_SIZE = "256Mi"
STAGING_MARGIN = 256 * 1024**2


def pod_patch(asset: WorkflowAsset) -> str:
    """The pod-spec patch of every job: the executor's projected token, and a size on each of Argo's emptyDirs."""
    staging = int(parse_quantity(asset.limits.output_size)) + STAGING_MARGIN
    sized = [
        {"name": ARGO_RUN_VOLUME, "emptyDir": {"sizeLimit": ARGO_RUN_SIZE}},
        {"name": ARGO_TMP_VOLUME, "emptyDir": {"sizeLimit": str(staging)}},
    ]
    if any(i.kind is not InputKind.ENV for i in asset.inputs):
        sized.append({"name": ARGO_INPUTS_VOLUME, "emptyDir": {"sizeLimit": asset.limits.input_size}})
    return json.dumps({"volumes": [executor_token_volume(), *sized]}, sort_keys=True)


def executor_token_volume() -> dict[str, Any]:
    """Argo's executor token volume, as a projected, pod-bound, short-lived token."""
    volume = {
        "name": EXEC_TOKEN_VOLUME,
        "secret": None,  # a strategic merge patch keeps the Secret source beside the new one unless it is removed
        "projected": {
            "sources": [
                {"serviceAccountToken": {"path": "token", "expirationSeconds": EXEC_TOKEN_SECONDS}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
            ]
        },
    }
    return volume


def asset_annotation(asset: WorkflowAsset) -> str:
    return json.dumps(asset.model_dump(mode="json", by_alias=True, exclude_none=True), sort_keys=True)


def compile_asset(asset: WorkflowAsset, target: StorageTarget, options: CompileOptions) -> WorkflowTemplate:
    """Compile ``asset`` into a Hera WorkflowTemplate for one tenant namespace and storage target."""
    labels = _labels(asset, options)
    pod_security, container_security = _security(asset)
    keys = target.keys
    inputs = [a for a in (_input_artifact(i, target) for i in asset.inputs) if a is not None]
    # One artifact for all outputs: the output directory, a volume mount point that a worker cannot turn into a
    # symlink, tarred by Argo without following the links inside; the API takes the declared outputs from it.
    outputs = (
        [
            _s3(
                target,
                OUTPUTS_ARTIFACT,
                keys.job_outputs_archive(JOB_NAME_PLACEHOLDER),
                path=asset.worker.output_dir,
                optional=True,
                archive=TarArchiveStrategy(),
            )
        ]
        if asset.outputs and asset.worker.output_dir
        else []
    )
    volumes: list[EmptyDirVolume] = []
    if asset.worker.output_dir:
        # Capped at the output size: the kubelet evicts a worker that writes more.
        volumes.append(
            EmptyDirVolume(
                name=OUTPUT_VOLUME,
                mount_path=asset.worker.output_dir,
                size_limit=m.Quantity(asset.limits.output_size),
            )
        )
    if asset.security.read_only_root_filesystem and (asset.worker.output_dir or "").rstrip("/") != "/tmp":
        # Always sized: an unbounded /tmp is the node's disk.
        cap = asset.resources.ephemeral_storage or options.tmp_size
        volumes.append(EmptyDirVolume(name=TMP_VOLUME, mount_path="/tmp", size_limit=m.Quantity(cap)))
    res = asset.resources
    items: list[Input | Output] = [*asset.inputs, *asset.outputs]
    names = {item.name: argo_name(item.name) for item in items}
    annotations = {
        ANNOTATION_ASSET: asset_annotation(asset),
        ANNOTATION_ASSET_NAME: asset.name,
        ANNOTATION_NAMES: json.dumps(names, sort_keys=True),
        f"{GROUP}/asset-version": asset.version,
    }
    if asset.description:
        annotations["workflows.argoproj.io/description"] = asset.description

    with WorkflowTemplate(
        name=template_name(asset.name),
        namespace=options.namespace,
        labels=labels,
        annotations=annotations,
        entrypoint=WORKER_TEMPLATE,
        service_account_name=options.workflow_service_account,
        # The worker gets no Kubernetes token; only Argo's executor containers use the account.
        automount_service_account_token=False,
        executor=m.ExecutorConfig(service_account_name=options.workflow_service_account),
        active_deadline_seconds=asset.limits.timeout,
        pod_gc=m.PodGC(strategy="OnPodCompletion", delete_delay_duration=options.pod_gc_delay),
        ttl_strategy=m.TTLStrategy(seconds_after_completion=options.ttl_seconds_after_completion),
        security_context=pod_security,
        workflow_metadata=m.WorkflowMetadata(labels=labels),
        pod_metadata=m.Metadata(
            labels=labels,
            annotations={KILL_CMD_WAIT: json.dumps([options.executor_binary, "kill", "%d", "1"])},
        ),
        pod_spec_patch=pod_patch(asset),
        # Argo's log archive reads a file the worker can replace with a symlink: the API archives logs instead.
        archive_logs=False,
        node_selector=dict(res.node_selector) or None,
        tolerations=[m.Toleration(**t.model_dump(exclude_none=True)) for t in res.tolerations] or None,
    ) as template:
        Container(
            name=WORKER_TEMPLATE,
            image=asset.worker.normalized_image,
            image_pull_policy=options.image_pull_policy,
            command=asset.worker.command,
            args=asset.worker.args,
            working_dir=asset.worker.working_dir,
            env=[Env(name=k, value=v) for k, v in sorted(asset.worker.env.items())] or None,
            resources=_resources(asset),
            security_context=container_security,
            env_from=[m.EnvFromSource(secret_ref=m.SecretEnvSource(name=ENV_SECRET_NAME, optional=False))]
            if any(i.kind is InputKind.ENV for i in asset.inputs)
            else None,
            inputs=inputs or None,
            outputs=outputs or None,
            volumes=volumes or None,
            retry_strategy=RetryStrategy(limit=asset.limits.retries) if asset.limits.retries else None,
        )
    return template


def to_yaml(manifest: dict[str, Any]) -> str:
    return yaml.safe_dump(manifest, sort_keys=True, default_flow_style=False)


def to_json(manifest: dict[str, Any]) -> str:
    return json.dumps(manifest, sort_keys=True, indent=2)
