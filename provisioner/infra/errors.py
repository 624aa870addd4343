"""What a step or a callback can report, as typed exceptions (the scheduler reads the type, nothing else).

.. code-block:: text

    ProvisionerError
    ├── TemporaryError(delay)   try the tenant again after ``delay`` seconds; counts as a failed attempt
    │   └── NotYet(delay)       progressing, nothing wrong (a namespace still terminating, pods rolling):
    │                           re-queued after ``delay``, never counted against ``work_max_attempts``
    └── PermanentError          retrying cannot help: the tenant (or grant) is failed and the connector told

Any other exception from Kubernetes, MinIO or the database is a temporary error with exponential backoff.
"""

from __future__ import annotations


class ProvisionerError(Exception):
    """Base of the provisioner's own outcomes."""


class TemporaryError(ProvisionerError):
    def __init__(self, message: str, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class NotYet(TemporaryError):
    def __init__(self, message: str, delay: float = 1.0) -> None:
        super().__init__(message, delay)


class PermanentError(ProvisionerError):
    pass
