"""What the lifecycle core tells a connector, whatever its protocol: a grant is ready, has ended, has failed.

Each protocol supplies a :class:`Notifier`, its client (``provisioner.protocols.{http_provisioner,signaling,dps}.
client``); the composition root (:func:`provisioner.app.build_services`) hands one per :class:`Protocol` to
:class:`provisioner.infra.services.Services`. A notifier only talks: what an outcome means for the grant is decided
in :mod:`provisioner.core.delivery`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol as TypingProtocol

from provisioner.infra.states import Protocol


class Outcome(StrEnum):
    OK = "ok"
    RETRY = "retry"  # worth another attempt later (5xx, 401/403/408/429, I/O errors)
    FATAL = "fatal"  # the connector rejected the request itself (400 invalid body, 404 unknown process)


@dataclass(frozen=True)
class CallbackResult:
    outcome: Outcome
    detail: str


@dataclass(frozen=True)
class GrantRef:
    """The facts of a grant a notifier may put on the wire (never its token: that is passed explicitly)."""

    id: int
    protocol: Protocol
    transfer_process_id: str
    resource_definition_id: str
    asset_id: str
    resource_name: str
    tenant_id: str
    callback_address: str
    profile: str = ""  # the transfer type/profile a signaling start named


class Notifier(TypingProtocol):
    def ready(self, grant: GrantRef, endpoint: str, token: str) -> CallbackResult:
        """The tenant is ready: hand the endpoint and this grant's token to the connector."""
        ...

    def ended(self, grant: GrantRef) -> CallbackResult:
        """The grant ended on our side (deprovisioned, expired, or removed by the operator)."""
        ...

    def failed(self, grant: GrantRef, reason: str) -> CallbackResult:
        """The grant can never be served."""
        ...

    def close(self) -> None:
        """Release the client's connections."""
        ...
