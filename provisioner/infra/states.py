"""Every state-like value of the provisioner, and the one table of allowed state changes.

A grant is one connector's claim on a tenant: one HTTP-provisioner resource, one signaling data flow. A
tenant lives while one of its grants *holds* it (active or suspended); only active grants' tokens open its API.

.. code-block:: text

    grant:  received ──▶ provisioning ──▶ ready ──▶ provisioned ◀──▶ suspended
               │              │  ▲          │           │                │
               ▼              ▼  └──────────┴───────────┘ (a new grant   │
             failed ◀───── (any open)        re-applies)                 │
                              └──────────────▶ deprovisioning ◀──────────┘
                                                     │
                                                     ▼
                                               deprovisioned

    tenant: pending ◀──▶ ready;  pending|ready ──▶ tearing_down ──▶ deleted ──▶ pending (revived)
            pending ──▶ failed ──▶ pending (admin retry) | tearing_down
"""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol as TypingProtocol


class TenantState(StrEnum):
    PENDING = "pending"  # objects being created or updated
    READY = "ready"
    TEARING_DOWN = "tearing_down"
    DELETED = "deleted"  # nothing left in Kubernetes or MinIO; the row stays for the audit trail
    FAILED = "failed"


class GrantState(StrEnum):
    RECEIVED = "received"  # persisted; the consumer is not known yet
    PROVISIONING = "provisioning"  # tenant known; its objects are being applied
    READY = "callback"  # objects ready; the endpoint is due to the connector (stored value kept from v1)
    PROVISIONED = "provisioned"  # the connector holds the endpoint and token
    SUSPENDED = "suspended"  # signaling suspend: the token is revoked, the tenant kept
    DEPROVISIONING = "deprovisioning"  # deprovision/terminate received, or the contract expired
    DEPROVISIONED = "deprovisioned"
    FAILED = "failed"


class Protocol(StrEnum):
    """How a grant's connector talks to us (each has its adapter under ``provisioner.protocols``)."""

    HTTP_PROVISIONER = "http-provisioner"  # EDC <= 0.15 control-plane provision-http
    SIGNALING = "signaling"  # EDC data plane signaling, JSON-LD (EDC 0.5-0.17, Tractus-X)
    DPS = "dps"  # Eclipse Data Plane Signaling, plain JSON (EDC >= 0.18)


class Handover(StrEnum):
    """How the endpoint and token reach the connector once the tenant is ready."""

    CALLBACK = "callback"  # we call the connector (provision callback, `provisioned`, DPS `started`)
    RESPONSE = "response"  # the connector's own request is still waiting for it (a synchronous start)


class EndedBy(StrEnum):
    DEPROVISION = "deprovision"  # EDC's HTTP provisioner
    TERMINATE = "terminate"  # signaling terminate
    COMPLETED = "completed"  # DPS completed notification
    EXPIRY = "expiry"  # the contract's end passed
    ADMIN = "admin"


class EndNotice(StrEnum):
    """The optional deprovision callback of the HTTP provisioner (None when not wanted)."""

    DUE = "due"
    DONE = "done"
    REJECTED = "rejected"
    FAILED = "failed"


# Grants that keep their tenant alive, and those whose token opens the tenant API.
HOLDING_GRANT_STATES = frozenset(
    {GrantState.PROVISIONING, GrantState.READY, GrantState.PROVISIONED, GrantState.SUSPENDED}
)
ACTIVE_GRANT_STATES = (GrantState.PROVISIONING, GrantState.READY, GrantState.PROVISIONED)

_G = GrantState
GRANT_TRANSITIONS: dict[GrantState, frozenset[GrantState]] = {
    _G.RECEIVED: frozenset({_G.PROVISIONING, _G.DEPROVISIONED, _G.DEPROVISIONING, _G.FAILED}),
    _G.PROVISIONING: frozenset({_G.READY, _G.SUSPENDED, _G.DEPROVISIONING, _G.FAILED}),
    _G.READY: frozenset({_G.PROVISIONED, _G.PROVISIONING, _G.SUSPENDED, _G.DEPROVISIONING, _G.FAILED}),
    _G.PROVISIONED: frozenset({_G.PROVISIONING, _G.SUSPENDED, _G.DEPROVISIONING, _G.FAILED}),
    _G.SUSPENDED: frozenset({_G.PROVISIONING, _G.DEPROVISIONING, _G.FAILED}),
    _G.DEPROVISIONING: frozenset({_G.DEPROVISIONED}),
    _G.DEPROVISIONED: frozenset(),
    _G.FAILED: frozenset({_G.DEPROVISIONING, _G.DEPROVISIONED}),
}
_T = TenantState
TENANT_TRANSITIONS: dict[TenantState, frozenset[TenantState]] = {
    _T.PENDING: frozenset({_T.READY, _T.TEARING_DOWN, _T.FAILED}),
    _T.READY: frozenset({_T.PENDING, _T.TEARING_DOWN}),
    _T.TEARING_DOWN: frozenset({_T.DELETED, _T.FAILED}),
    _T.DELETED: frozenset({_T.PENDING}),
    _T.FAILED: frozenset({_T.PENDING, _T.TEARING_DOWN}),
}


class IllegalTransition(RuntimeError):
    """A code path tried a state change the table above does not allow (a bug, never input)."""


class _Stateful(TypingProtocol):
    state: str


def move(row: _Stateful, new: GrantState | TenantState) -> bool:
    """Set ``row.state`` to ``new`` if the table allows it; staying put is allowed and returns False."""
    current = row.state
    if current == new:
        return False
    table: dict[str, frozenset[str]] = dict(
        GRANT_TRANSITIONS if isinstance(new, GrantState) else TENANT_TRANSITIONS  # type: ignore[arg-type]
    )
    if new not in table.get(current, frozenset()):
        raise IllegalTransition(f"{type(new).__name__} {current} -> {new} is not allowed")
    row.state = new
    return True
