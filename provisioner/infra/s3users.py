"""Per-tenant S3 credentials on MinIO: one user and one policy, scoped to the tenant's prefix."""

from __future__ import annotations

import json
from typing import Any

from minio import Minio, MinioAdmin
from minio.commonconfig import ENABLED, Filter
from minio.credentials.providers import StaticProvider
from minio.deleteobjects import DeleteObject
from minio.error import MinioAdminException, MinioException, S3Error
from minio.lifecycleconfig import AbortIncompleteMultipartUpload, LifecycleConfig, Rule
from urllib3.exceptions import HTTPError

from provisioner.infra.settings import ProvisionerSettings
from templates.keys import KeyLayout


class S3AdminError(Exception):
    pass


def _canonical(value: Any) -> Any:
    """A policy with its lists in a fixed order (MinIO may return statements and actions reordered)."""
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return sorted((_canonical(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
    return value


def tenant_policy(bucket: str, prefix: str) -> dict[str, Any]:
    """Read, write and delete under ``<bucket>/<prefix>/``; list only that prefix; nothing else."""
    keys = KeyLayout(prefix)
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": [
                    "s3:GetObject",
                    "s3:PutObject",
                    "s3:DeleteObject",
                    "s3:AbortMultipartUpload",
                    "s3:ListMultipartUploadParts",
                ],
                "Resource": [f"arn:aws:s3:::{bucket}/{keys.all_glob()}"],
            },
            {
                # HEAD of the bare prefix key: clients (s3fs) probe it and must see 404, not 403.
                "Effect": "Allow",
                "Action": ["s3:GetObject"],
                "Resource": [f"arn:aws:s3:::{bucket}/{prefix}"],
            },
            {
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": [f"arn:aws:s3:::{bucket}"],
                "Condition": {"StringLike": {"s3:prefix": [prefix, keys.all_glob()]}},
            },
            {
                "Effect": "Allow",
                "Action": ["s3:GetBucketLocation"],
                "Resource": [f"arn:aws:s3:::{bucket}"],
            },
        ],
    }


def executor_policy(bucket: str, prefix: str) -> dict[str, Any]:
    """What Argo's executor needs of one tenant, and no more: read job inputs, write under ``exec/`` (the output
    archive). No delete, no staging, no sealed outputs, no receipts. No pod holds these keys: the API mints each
    job's own from them (STS, a session policy of that job's keys), which can only be narrower."""
    keys = KeyLayout(prefix)
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["s3:GetObject"],
                "Resource": [f"arn:aws:s3:::{bucket}/{keys.job_inputs_glob()}"],
            },
            {
                # Its own prefix: policy wildcards match '/' too, so nothing under jobs/ can be named here.
                "Effect": "Allow",
                "Action": ["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
                "Resource": [f"arn:aws:s3:::{bucket}/{keys.executor_glob()}"],
            },
            {
                # Directory inputs are listed under the job's own input keys.
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": [f"arn:aws:s3:::{bucket}"],
                "Condition": {"StringLike": {"s3:prefix": [keys.job_inputs_glob()]}},
            },
            {"Effect": "Allow", "Action": ["s3:GetBucketLocation"], "Resource": [f"arn:aws:s3:::{bucket}"]},
            # MinIO lets any user make access keys for itself unless denied: keys that would outlive every job.
            # The API mints each job's own keys with STS (api.backends.sts), which this does not stop.
            {"Effect": "Deny", "Action": ["admin:CreateServiceAccount"]},
        ],
    }


def _absent(exc: MinioAdminException) -> bool:
    text = str(exc)
    return "NoSuch" in text or "does not exist" in text or "not found" in text.lower()


class S3Admin:
    def __init__(self, settings: ProvisionerSettings) -> None:
        creds = StaticProvider(
            settings.s3_admin_access_key.get_secret_value(), settings.s3_admin_secret_key.get_secret_value()
        )
        self.bucket = settings.s3_bucket
        self.endpoint, self.secure = settings.s3_endpoint, settings.s3_secure
        self.admin = MinioAdmin(endpoint=settings.s3_endpoint, credentials=creds, secure=settings.s3_secure)
        self.s3 = Minio(
            settings.s3_endpoint,
            access_key=settings.s3_admin_access_key.get_secret_value(),
            secret_key=settings.s3_admin_secret_key.get_secret_value(),
            secure=settings.s3_secure,
            region=settings.s3_region,
        )

    def ensure_user(self, user: str, secret: str, prefix: str, executor: bool = False) -> None:
        """Create or update the user, its policy and the binding (idempotent). ``executor``: the narrow
        policy of Argo's executor instead of the API's whole-prefix one."""
        try:
            policy = executor_policy(self.bucket, prefix) if executor else tenant_policy(self.bucket, prefix)
            if self._in_place(user, secret, policy, prefix):
                return
            if not self.s3.bucket_exists(self.bucket):
                self.s3.make_bucket(self.bucket)
            self.admin.policy_add(user, policy=policy)
            self.admin.user_add(user, secret)
            self._bind_policy(user)
        except (MinioAdminException, MinioException, HTTPError, OSError, ValueError) as exc:
            raise S3AdminError(f"MinIO user {user}: {exc}") from None

    def _bind_policy(self, user: str) -> None:
        """The user's policy (of its own name) as its only one. MinIO's set-user-or-group-policy call is not
        encrypted; attach is, with an Argon2 key derived for the request and for the answer on both ends, which
        made it ~0.2 s of CPU per new tenant user. A MinIO without the older call gets attach."""
        try:
            self.admin.policy_set(user, user=user)
        except MinioAdminException:
            attached = json.loads(self.admin.user_info(user)).get("policyName", "")
            if user not in attached.split(","):
                self.admin.attach_policy([user], user=user)

    def _in_place(self, user: str, secret: str, policy: dict[str, Any], prefix: str) -> bool:
        """Whether the user exists, enabled, with exactly this policy attached and this secret key: then there is
        nothing to write (each admin write costs ~0.1-0.2 s: MinIO encrypts it with argon2). Any doubt: False."""
        try:
            info = json.loads(self.admin.user_info(user))
            if info.get("status") != "enabled" or user not in str(info.get("policyName", "")).split(","):
                return False
            if _canonical(json.loads(self.admin.policy_info(user))) != _canonical(policy):
                return False
            probe = Minio(self.endpoint, access_key=user, secret_key=secret, secure=self.secure)
            try:
                next(iter(probe.list_objects(self.bucket, prefix=f"{prefix}/probe-")), None)
            except S3Error as exc:
                # Refused for the key itself: it must be set. Refused by the policy: the key is right.
                return exc.code not in ("InvalidAccessKeyId", "SignatureDoesNotMatch")
            return True
        except (MinioAdminException, MinioException, HTTPError, OSError, ValueError):
            return False

    def remove_user(self, user: str) -> None:
        """Remove user and policy; absent ones are fine."""
        for step in (self.admin.user_remove, self.admin.policy_remove):
            try:
                step(user)
            except MinioAdminException as exc:
                if not _absent(exc):
                    raise S3AdminError(f"MinIO user {user}: {exc}") from None
            except (MinioException, HTTPError, OSError) as exc:
                raise S3AdminError(f"MinIO user {user}: {exc}") from None

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix/``; returns how many."""
        try:
            names = [o.object_name for o in self.s3.list_objects(self.bucket, prefix=f"{prefix}/", recursive=True)]
            errors = list(self.s3.remove_objects(self.bucket, (DeleteObject(n) for n in names if n)))
        except (MinioException, HTTPError, OSError) as exc:
            raise S3AdminError(f"delete {prefix}: {exc}") from None
        if errors:
            raise S3AdminError(f"delete {prefix}: {errors[0]}")
        return len(names)

    def children(self, parent: str) -> list[str]:
        """Names of the "folders" directly under ``parent/`` (one delimited LIST, paginated by the client)."""
        try:
            found = self.s3.list_objects(self.bucket, prefix=f"{parent}/", recursive=False)
            return sorted({o.object_name[len(parent) + 1 :].rstrip("/") for o in found if o.is_dir and o.object_name})
        except (MinioException, HTTPError, OSError) as exc:
            raise S3AdminError(f"list {parent}: {exc}") from None

    def ensure_lifecycle(self, days: int) -> bool:
        """The bucket rule that aborts multipart uploads left incomplete for ``days`` (AWS S3, Ceph, ...).
        Returns whether the store holds it: MinIO refuses the rule (or, in some releases, accepts and drops it)
        and aborts stale uploads by its own ``api stale_uploads_expiry`` setting instead (the local stack sets it).
        Transport faults raise S3AdminError."""
        rule = Rule(
            ENABLED,
            rule_filter=Filter(prefix=""),
            rule_id="wml-abort-incomplete-multipart",
            abort_incomplete_multipart_upload=AbortIncompleteMultipartUpload(days),
        )
        try:
            current = self.s3.get_bucket_lifecycle(self.bucket)
            others = [r for r in (current.rules if current else []) if r.rule_id != rule.rule_id]
            try:
                self.s3.set_bucket_lifecycle(self.bucket, LifecycleConfig([*others, rule]))
            except S3Error as exc:
                if exc.code in ("InvalidArgument", "MalformedXML", "NotImplemented"):
                    return False  # the store does not do this rule
                raise
            kept = self.s3.get_bucket_lifecycle(self.bucket)
        except (MinioException, HTTPError, OSError) as exc:
            raise S3AdminError(f"lifecycle of {self.bucket}: {exc}") from None
        return any(
            r.rule_id == rule.rule_id and r.abort_incomplete_multipart_upload is not None
            for r in (kept.rules if kept else [])
        )

    def ping(self) -> None:
        try:
            self.s3.bucket_exists(self.bucket)
        except (MinioException, HTTPError, OSError) as exc:
            raise S3AdminError(str(exc)) from None
