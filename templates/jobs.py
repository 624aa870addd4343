"""One job: its environment, resolved and checked against the asset, and the Workflow that starts it."""

from __future__ import annotations

import base64
import json
import re
import secrets
from collections.abc import Mapping
from typing import Any

from templates.asset import InputKind, WorkflowAsset
from templates.envvars import EnvError, check_env, parse_dotenv
from templates.labels import (
    ANNOTATION_ASSET_NAME,
    ANNOTATION_ENV_DIGESTS,
    ANNOTATION_IDEMPOTENCY,
    ANNOTATION_INPUT_DIGESTS,
    ANNOTATION_REQUEST,
    LABEL_ASSET,
    LABEL_FINISH,
    LABEL_JOB,
    LABEL_MANAGED_BY,
    LABEL_TENANT,
    LABEL_WEBHOOK,
    MANAGER,
    FinishMark,
    WebhookMark,
)
from templates.names import ENV_SECRET_SUFFIX, S3_SECRET_SUFFIX, dns_label, template_name

JOB_ID = re.compile(r"^job-[a-z0-9]{8,40}\Z")


def new_job_id() -> str:
    """Job ids are also Workflow names and S3 key segments: lowercase, fixed shape, unguessable."""
    return "job-" + secrets.token_hex(8)


def resolve_env(
    asset: WorkflowAsset,
    dotenv: Mapping[str, str],
    parameters: Mapping[str, str],
) -> dict[str, str]:
    """Merge the env inputs of a job: declared defaults, then uploaded dotenv files, then parameters.

    ``dotenv`` maps env input names to the uploaded text. ``parameters`` are the job's explicit values;
    each must be a key that one of the asset's env inputs accepts. Raises EnvError with the reason.
    """
    env_inputs = [i for i in asset.inputs if i.kind is InputKind.ENV]
    if parameters and not env_inputs:
        raise EnvError("this asset takes no parameters")
    unknown_uploads = set(dotenv) - {i.name for i in env_inputs}
    if unknown_uploads:
        raise EnvError(f"not env inputs of this asset: {sorted(unknown_uploads)}")
    values: dict[str, str] = {}
    for item in env_inputs:
        for spec in item.keys or []:
            if spec.default is not None:
                values[spec.name] = spec.default
        if item.name in dotenv:
            parsed = parse_dotenv(dotenv[item.name])
            try:
                values.update(check_env(parsed, allowed=item.allowed_keys, allow_unsafe=item.allow_unsafe_keys))
            except EnvError as exc:
                raise EnvError(f"input {item.name!r}: {exc}") from None
    remaining = dict(parameters)
    for item in env_inputs:
        accepted = {k: v for k, v in remaining.items() if item.allowed_keys is None or k in item.allowed_keys}
        values.update(check_env(accepted, allowed=item.allowed_keys, allow_unsafe=item.allow_unsafe_keys))
        for key in accepted:
            remaining.pop(key)
    if remaining:
        raise EnvError(f"parameters not accepted by this asset: {sorted(remaining)}")
    for item in env_inputs:
        missing = [k.name for k in item.keys or [] if k.required and k.name not in values]
        if missing:
            raise EnvError(f"input {item.name!r}: required keys missing: {missing}")
    return values


def job_workflow(
    asset: WorkflowAsset,
    *,
    namespace: str,
    job_id: str,
    tenant: str = "",
    idempotency_key: str | None = None,
    request_digest: str | None = None,
    env_digests: Mapping[str, str] | None = None,
    input_digests: Mapping[str, str] | None = None,
    webhook: WebhookMark | None = None,
) -> dict[str, Any]:
    """The Workflow manifest that runs ``asset``'s registered template once as job ``job_id``.

    It carries nothing but the template reference and our own labels and annotations: no arguments, no spec
    overrides, so no consumer string ever reaches Argo's template engine (the environment travels in
    :func:`env_secret`). The consumer API records its start in it: the sha256 of the start request (an
    Idempotency-Key's replay compares it), of each env input's text and of each staged input, and ``webhook``
    marks a job whose completion event is to be sent. A plain dict: it is built on every job start, and Hera's
    model would cost more than the rest of the start's own work (a test validates it against Argo's schema)."""
    if not JOB_ID.match(job_id):
        raise ValueError(f"invalid job id {job_id!r}")
    labels = {LABEL_MANAGED_BY: MANAGER, LABEL_ASSET: dns_label(asset.name), LABEL_JOB: job_id}
    if tenant:
        labels[LABEL_TENANT] = dns_label(tenant)
    if webhook is not None:
        labels[LABEL_WEBHOOK] = str(webhook)
    labels[LABEL_FINISH] = str(FinishMark.PENDING)
    annotations: dict[str, str] = {}
    if idempotency_key:
        annotations[ANNOTATION_IDEMPOTENCY] = idempotency_key
    if request_digest is not None:
        annotations[ANNOTATION_REQUEST] = request_digest
    if env_digests is not None:
        annotations[ANNOTATION_ENV_DIGESTS] = json.dumps(dict(env_digests), sort_keys=True)
    if input_digests is not None:
        annotations[ANNOTATION_INPUT_DIGESTS] = json.dumps(dict(input_digests), sort_keys=True)
    annotations[ANNOTATION_ASSET_NAME] = asset.name  # the label holds it as a DNS label only
    metadata: dict[str, Any] = {"name": job_id, "namespace": namespace, "labels": labels, "annotations": annotations}
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": metadata,
        "spec": {"workflowTemplateRef": {"name": template_name(asset.name)}},
    }


def env_secret_name(job_id: str) -> str:
    return job_id + ENV_SECRET_SUFFIX


def s3_secret_name(job_id: str) -> str:
    """The Secret with the job's own S3 credentials (see templates.compiler.JOB_S3_SECRET)."""
    return job_id + S3_SECRET_SUFFIX


# The keys of a job's S3 Secret, as compiled templates name them (templates.compiler.StorageTarget).
S3_ACCESS_KEY, S3_SECRET_KEY, S3_SESSION_TOKEN = "accessKey", "secretKey", "sessionToken"


def s3_secret(job_id: str, access_key: str, secret_key: str, session_token: str, tenant: str = "") -> dict[str, Any]:
    """The Secret with the job's own short-lived S3 keys, which Argo mounts into its init and wait containers."""
    keys = {S3_ACCESS_KEY: access_key, S3_SECRET_KEY: secret_key, S3_SESSION_TOKEN: session_token}
    return _job_secret(job_id, s3_secret_name(job_id), tenant, stringData=keys)


def _job_secret(job_id: str, name: str, tenant: str, **content: Any) -> dict[str, Any]:
    """One of a job's own Opaque Secrets, labelled with the job (and tenant)."""
    if not JOB_ID.match(job_id):
        raise ValueError(f"invalid job id {job_id!r}")
    labels = {LABEL_MANAGED_BY: MANAGER, LABEL_JOB: job_id}
    if tenant:
        labels[LABEL_TENANT] = dns_label(tenant)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": name, "labels": labels},
        **content,
    }


def env_secret(job_id: str, env: Mapping[str, str], tenant: str = "") -> dict[str, Any]:
    """The Secret whose keys the worker receives as environment variables (``envFrom``), values verbatim."""
    data = {k: base64.b64encode(env[k].encode()).decode() for k in sorted(env)}
    return _job_secret(job_id, env_secret_name(job_id), tenant, data=data)
