"""Every exception the consumer API raises on purpose, in one tree (the one owner of these names).

How each is answered (RFC 9457 problem documents) is :mod:`api.web.problems`'s business; this module only says what
went wrong. Classes that used to derive from a built-in (``ValueError``, ``LookupError``, ``RuntimeError``) still do,
so code that catches the built-in behaves as before.

::

    ConsumerApiError                       base: every error below
    ├── HTTPProblem                        answered as it is: status, title, detail, headers
    ├── BackendUnavailable                 a backend could not be reached or failed: 503 + Retry-After
    │   ├── StorageUnavailable             S3
    │   ├── ArgoUnavailable                Argo Server
    │   └── KubeUnavailable                the Kubernetes API
    │       └── LockBusy                   another replica held the start lock too long
    ├── UploadAbandoned                    a streamed upload's writer gave up: the S3 SDK aborts (never answered)
    ├── BackendRefused                     a backend refused our request as it was made
    │   ├── ArgoRejected                   Argo Server: malformed request (400)
    │   ├── KubeRejected                   Kubernetes: RBAC, admission, validation (502)
    │   └── StsRefused                     S3's STS would not mint or revoke a job's keys (502)
    ├── ArgoNotFound                       no such Workflow / WorkflowTemplate (a lookup's answer)
    ├── ArgoConflict                       the Workflow exists already (a replayed start)
    ├── Replay                             a job start finds its job already there
    ├── QuotaFull                          as many jobs run as the contract allows (429)
    ├── TooLarge                           more bytes than a cap allows (413)
    ├── RangeNotSatisfiable                an HTTP Range outside the object (416)
    ├── FormError                          not a form with exactly the one file field (400)
    └── TargetRefused                      a webhook URL that may not be called (422)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from api.core.workflow import Workflow


class ConsumerApiError(Exception):
    """Base of every error the consumer API raises on purpose."""


class HTTPProblem(ConsumerApiError):
    """Answered as it is, as a problem document: ``status``, ``title``, ``detail``, extra ``headers``, and extension
    members (``limit``: a refused bound's name, ``value`` and ``left``, as :func:`over_limit` gives them)."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        headers: dict[str, str] | None = None,
        members: dict[str, object] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.headers = headers
        self.members = members or {}


def over_limit(status: int, detail: str, limit: str, value: int, left: int | None = None) -> HTTPProblem:
    """A refusal at a bound: the problem document names the bound, its value and what is left of it."""
    title = {413: "Content Too Large", 429: "Too Many Requests"}.get(status, "Unprocessable Content")
    members: dict[str, object] = {"limit": limit, "value": value}
    if left is not None:
        members["left"] = left
    return HTTPProblem(status, title, detail, members=members)


def not_found(what: str) -> HTTPProblem:
    return HTTPProblem(404, "Not Found", f"{what} does not exist")


# --- backends ------------------------------------------------------------------------------------------------


class BackendUnavailable(ConsumerApiError):
    """A backend could not be reached or failed (retryable: answered 503 with Retry-After)."""


class StorageUnavailable(BackendUnavailable, RuntimeError):
    """S3 could not be reached or answered with a server fault."""


class ArgoUnavailable(BackendUnavailable, RuntimeError):
    """Argo Server could not be reached or failed."""


class KubeUnavailable(BackendUnavailable):
    """The Kubernetes API could not be reached or failed (retryable)."""


class LockBusy(KubeUnavailable):
    """Another replica held the start lock for longer than a start may wait (retryable)."""


class UploadAbandoned(ConsumerApiError):
    """Raised to the S3 SDK reading a streamed upload whose writer gave up, so that it aborts the upload."""


class BackendRefused(ConsumerApiError):
    """A backend refused a request of ours as it was made (retrying the same request does not help)."""


class ArgoRejected(BackendRefused, ValueError):
    """Argo Server refused the request as malformed (e.g. a stale page token)."""


class KubeRejected(BackendRefused):
    """The Kubernetes API refused the request (RBAC, admission, validation)."""


class StsRefused(BackendRefused):
    """S3's STS refused to mint or revoke a job's own keys (the executor user is missing, say)."""


class ArgoNotFound(ConsumerApiError, LookupError):
    """Argo Server has no object of that name."""


class ArgoConflict(ConsumerApiError, RuntimeError):
    """Argo Server has an object of that name already."""


# --- job starts ----------------------------------------------------------------------------------------------


class Replay(ConsumerApiError):
    """The job exists already: answer as a replay of its start."""

    def __init__(self, workflow: Workflow) -> None:
        super().__init__(workflow.metadata.name)
        self.workflow = workflow


class QuotaFull(ConsumerApiError):
    """As many jobs run as the contract allows."""


# --- requests ------------------------------------------------------------------------------------------------


class TooLarge(ConsumerApiError, ValueError):
    """More bytes than ``limit`` (an upload, a staged env input read whole)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"larger than the limit of {limit} bytes")


class RangeNotSatisfiable(ConsumerApiError, ValueError):
    """The header asks for something this object cannot give (answered with 416 and ``bytes */size``)."""


class FormError(ConsumerApiError, ValueError):
    """The body is not a form with exactly one file field of the expected name."""


class TargetRefused(ConsumerApiError, ValueError):
    """The webhook URL may not be called (its reason is safe to show to the consumer)."""
