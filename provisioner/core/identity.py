"""The one rule for who a grant's consumer is.

With ``management`` among ``identity_sources`` (the default) the connector's own records decide: the transfer
exists and is provisioning, it and its contract agreement are for the requested asset, and the consumer is the
agreement's consumer. Nothing in the request body is believed. Only an operator who lists ``assignee`` alone
trusts the body's ``policy.assignee`` (connectors whose management API the provisioner cannot reach), with
``fallback_consumer`` as the last resort.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from provisioner.core import policy
from provisioner.infra.connector import EdcRejected
from provisioner.infra.services import Services


class IdentitySource(StrEnum):
    MANAGEMENT = "management"
    ASSIGNEE = "assignee"
    FALLBACK = "fallback"
    SIGNALING = "signaling"  # named by an authenticated control plane, not cross-checked


@dataclass(frozen=True)
class Identity:
    consumer_id: str
    contract_id: str | None
    source: IdentitySource


def resolve(svc: Services, transfer_process_id: str, asset_id: str, grant_policy: dict[str, Any] | None) -> Identity:
    """The consumer of a provision request. Raises EdcRejected (never theirs) or EdcLookupError (ask again)."""
    settings = svc.settings
    if settings.verify_with_management:
        facts = svc.management.verify_transfer(transfer_process_id, asset_id)
        return Identity(facts.consumer_id, facts.contract_id, IdentitySource.MANAGEMENT)
    consumer = policy.assignee(grant_policy)
    if consumer:
        return Identity(consumer, None, IdentitySource.ASSIGNEE)
    if settings.fallback_consumer:
        return Identity(settings.fallback_consumer, None, IdentitySource.FALLBACK)
    raise EdcRejected("the policy names no assignee and no fallback consumer is configured")


# Provider-side transfer states in which a control plane signals a data flow start (EDC 0.15 signals from
# STARTING; a restart after suspend or our `provisioned` callback comes from the others).
FLOW_STATES = frozenset(
    {
        "INITIAL",
        "PROVISIONING",
        "PROVISIONING_REQUESTED",
        "PROVISIONED",
        "REQUESTED",
        "STARTING",
        "STARTED",
        "SUSPENDED",
        "RESUMING",
    }
)


def resolve_flow(svc: Services, process_id: str, dataset_id: str, named_consumer: str) -> Identity:
    """The consumer of a signaling data flow. The control plane is authenticated (shared secret or OAuth2) and
    names the consumer; when its management API is configured, the connector's records must agree (transfer
    exists, same asset, the agreement's consumer is the one named). Raises EdcRejected / EdcLookupError."""
    settings = svc.settings
    if settings.signaling_verify_with_management and settings.edc_management_url:
        facts = svc.management.verify_transfer(process_id, dataset_id, states=FLOW_STATES)
        if facts.consumer_id != named_consumer:
            raise EdcRejected(f"transfer {process_id} belongs to another consumer than the one named")
        return Identity(facts.consumer_id, facts.contract_id, IdentitySource.MANAGEMENT)
    return Identity(named_consumer, None, IdentitySource.SIGNALING)
