"""The S3 key layout, shared by the compiled templates and the consumer API (the one owner of it).

::

    <tenant prefix>/staging/<asset>/<input>[/<relative path>]   uploads waiting for a job
    <tenant prefix>/jobs/<job>/inputs/<input>[/<relative path>]  the job's snapshot of its inputs
    <tenant prefix>/jobs/<job>/outputs/<output>                  a file output, as the file
    <tenant prefix>/jobs/<job>/outputs/<output>.tgz              a directory output, as a gzipped tar
    <tenant prefix>/jobs/<job>/logs/<pod>/main.log               the worker's archived log
    <tenant prefix>/jobs/<job>/receipt.json                      the job's receipt
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

    def job(self, job: str) -> str:
        return f"{self.prefix}/jobs/{job}"

    def job_input(self, job: str, input_name: str) -> str:
        return f"{self.job(job)}/inputs/{check_safe_name(input_name)}"

    def job_output(self, job: str, output_name: str, directory: bool = False) -> str:
        key = f"{self.job(job)}/outputs/{check_safe_name(output_name)}"
        return f"{key}.tgz" if directory else key

    def job_outputs(self, job: str) -> str:
        return f"{self.job(job)}/outputs"

    def job_logs(self, job: str) -> str:
        return f"{self.job(job)}/logs"

    def job_log_archive(self, job: str, pod: str) -> str:
        return f"{self.job_logs(job)}/{pod}"

    def job_receipt(self, job: str) -> str:
        return f"{self.job(job)}/receipt.json"
