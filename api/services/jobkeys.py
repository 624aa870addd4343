"""Each job's own S3 keys: minted at its start, scoped to its keys, handed to Argo in the job's own Secret, revoked
at its end.

A job pod holds no credential of the tenant: Argo's init container reads the job's input snapshot and the wait
container writes the job's output archive with keys that can do only that, for that job, until it ends (the
finishing loop revokes them; they expire on their own ``limits.timeout`` + :data:`GRACE_SECONDS` after the start
at the latest). Stolen from a job, they cannot read another job's inputs, write another job's keys, delete
anything, or outlive the job.
"""

from __future__ import annotations

import contextlib
from typing import Any

from api.backends.kube import TenantKube
from api.backends.sts import MinioSts
from api.core.errors import KubeRejected, KubeUnavailable, StorageUnavailable, StsRefused
from templates.jobs import s3_secret, s3_secret_name
from templates.keys import KeyLayout

# How long a job's keys outlive its own deadline when the API never gets to revoke them (it is away): a job may
# wait for a node before its deadline starts counting, and its outputs are saved after the worker ends.
GRACE_SECONDS = 3600


def job_policy(bucket: str, keys: KeyLayout, job: str) -> dict[str, Any]:
    """Read this job's input snapshot (and list it: directory inputs), write under its own ``exec/<job>/``."""
    inputs = keys.job_inputs_glob_of(job)
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": [f"arn:aws:s3:::{bucket}/{inputs}"]},
            {
                "Effect": "Allow",
                "Action": ["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
                "Resource": [f"arn:aws:s3:::{bucket}/{keys.executor_glob_of(job)}"],
            },
            {
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": [f"arn:aws:s3:::{bucket}"],
                "Condition": {"StringLike": {"s3:prefix": [inputs]}},
            },
            {"Effect": "Allow", "Action": ["s3:GetBucketLocation"], "Resource": [f"arn:aws:s3:::{bucket}"]},
        ],
    }


class JobKeys:
    def __init__(self, sts: MinioSts, kube: TenantKube, bucket: str, keys: KeyLayout, tenant: str) -> None:
        self.sts = sts
        self.kube = kube
        self.bucket = bucket
        self.keys = keys
        self.tenant = tenant

    async def secret(self, job: str, timeout_seconds: int) -> dict[str, Any]:
        """The job's Secret manifest, with keys minted for it now."""
        creds = await self.sts.assume(
            job_policy(self.bucket, self.keys, job), timeout_seconds + GRACE_SECONDS, revoke_type=job
        )
        return s3_secret(
            job,
            creds.access_key,
            creds.secret_key.get_secret_value(),
            creds.session_token.get_secret_value(),
            self.tenant,
        )

    async def revoke(self, job: str) -> None:
        """End the job's keys, wherever a copy of them went, and remove their Secret (idempotent)."""
        await self.sts.revoke(job)
        with contextlib.suppress(KubeRejected):  # gone with its Workflow already, or never made
            await self.kube.delete_secret(s3_secret_name(job))

    async def revoke_quietly(self, job: str) -> None:
        """For a start that failed: best effort (the finishing loop never sees a job without a Workflow, but its
        keys expire on their own)."""
        with contextlib.suppress(KubeUnavailable, KubeRejected, StorageUnavailable, StsRefused):
            await self.revoke(job)
