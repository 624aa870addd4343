"""The S3 key layout, shared by the compiled templates and the consumer API (the one owner of it).

::

    <tenant prefix>/staging/<asset>/<input>[/<relative path>]   uploads waiting for a job
    <tenant prefix>/staging/<asset>/.meta/<input>.json           an upload's record: it is there once this is
    <tenant prefix>/jobs/<job>/inputs/<input>[/<relative path>]  the job's snapshot of its inputs
    <tenant prefix>/jobs/<job>/outputs/<output>                  a file output, as the file        (API only)
    <tenant prefix>/jobs/<job>/outputs/<output>.tgz              a directory output, as a gzipped tar (API only)
    <tenant prefix>/jobs/<job>/sealed.json                       what the API took from outputs.tgz (API only)
    <tenant prefix>/jobs/<job>/receipt.json                      the job's receipt                 (API only)
    <tenant prefix>/jobs/<job>/webhook.json                      its completion event's delivery   (API only)
    <tenant prefix>/jobs/<job>/logs/<pod>.log                    a pod's worker log, from the kubelet (API only)
    <tenant prefix>/webhook.json                                 the tenant's webhook URL and secrets (API only)
    <tenant prefix>/exec/<job>/outputs.tgz                       the output directory as Argo's executor saved it
    <tenant prefix>/exec/<job>/artifacts/<pod>/…                 anything else Argo's executor stores

Everything Argo's executor writes lives under ``exec/``, the only prefix its credentials may write (S3 policy
wildcards also match ``/``, so a separate prefix is the only exact boundary): what consumers download, the seal
record and the receipt are the API's alone, and a consumer who extracts the executor's credentials from a job can
change none of them.
"""

from __future__ import annotations

from dataclasses import dataclass

from templates.names import check_safe_name

JOB_NAME_PLACEHOLDER = "{{workflow.name}}"
POD_NAME_PLACEHOLDER = "{{pod.name}}"


@dataclass(frozen=True)
class KeyLayout:
    """Keys of one tenant. ``prefix`` has no leading or trailing slash."""

    prefix: str

    def __post_init__(self) -> None:
        parts = self.prefix.split("/")
        if not self.prefix or any(p in {"", ".", ".."} for p in parts):
            raise ValueError(f"invalid tenant prefix {self.prefix!r}")

    def staging(self, asset: str, input_name: str = "") -> str:
        base = f"{self.prefix}/staging/{check_safe_name(asset)}"
        return f"{base}/{check_safe_name(input_name)}" if input_name else base

    def staged_records(self, asset: str) -> str:
        """The folder of the asset's staged-input records (input names never start with '.': no collision)."""
        return f"{self.staging(asset)}/.meta"

    def staged_record(self, asset: str, input_name: str) -> str:
        """The record that makes a staged input visible (size, sha256, when; a directory input's files)."""
        return f"{self.staged_records(asset)}/{check_safe_name(input_name)}.json"

    def job_input_digest(self, job: str, input_name: str) -> str:
        """The sha256 record of an env input, as jobs started by earlier releases kept it."""
        return f"{self.job_input(job, input_name)}.sha256.json"

    def job(self, job: str) -> str:
        return f"{self.prefix}/jobs/{job}"

    def job_input(self, job: str, input_name: str) -> str:
        return f"{self.job(job)}/inputs/{check_safe_name(input_name)}"

    def job_output(self, job: str, output_name: str, directory: bool = False) -> str:
        key = f"{self.job(job)}/outputs/{check_safe_name(output_name)}"
        return f"{key}.tgz" if directory else key

    def executor(self, job: str) -> str:
        """Where Argo's executor writes for ``job`` (untrusted content)."""
        return f"{self.prefix}/exec/{job}"

    def job_outputs_archive(self, job: str) -> str:
        """The whole output directory as one tar.gz, written by Argo's executor."""
        return f"{self.executor(job)}/outputs.tgz"

    def job_artifacts(self, job: str) -> str:
        return f"{self.executor(job)}/artifacts"

    def job_seal(self, job: str) -> str:
        return f"{self.job(job)}/sealed.json"

    def job_logs(self, job: str) -> str:
        """A job's archived logs: stored by the API from the kubelet's copy, never by Argo's executor (which
        would follow a symlink the worker planted in its place)."""
        return f"{self.job(job)}/logs"

    def job_log_archive(self, job: str, pod: str) -> str:
        return f"{self.job_logs(job)}/{check_safe_name(pod)}.log"

    def job_receipt(self, job: str) -> str:
        return f"{self.job(job)}/receipt.json"

    def job_webhook(self, job: str) -> str:
        return f"{self.job(job)}/webhook.json"

    def webhook_config(self) -> str:
        return f"{self.prefix}/webhook.json"

    # --- the same layout as S3 policy globs (provisioner.infra.s3users grants these; '*' matches '/' too) ---------

    def all_glob(self) -> str:
        """Every key of the tenant."""
        return f"{self.prefix}/*"

    def job_inputs_glob(self) -> str:
        """Every job's input snapshot: what the executor reads."""
        return f"{self.job('*')}/inputs/*"

    def job_inputs_glob_of(self, job: str) -> str:
        """One job's input snapshot: what that job's own keys read."""
        return f"{self.job(job)}/inputs/*"

    def executor_glob_of(self, job: str) -> str:
        """What one job's executor writes: all that job's own keys may write."""
        return f"{self.executor(job)}/*"

    def executor_glob(self) -> str:
        """Everything Argo's executor writes: its own prefix, since a glob under ``jobs/`` would reach the API's."""
        return self.executor("*")
