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

from provisioner import policy
from provisioner.edc_client import EdcRejected
from provisioner.services import Services


class IdentitySource(StrEnum):
    MANAGEMENT = "management"
    ASSIGNEE = "assignee"
    FALLBACK = "fallback"


@dataclass(frozen=True)
class Identity:
    consumer_id: str
    contract_id: str | None
    source: IdentitySource


def resolve(svc: Services, transfer_process_id: str, asset_id: str, grant_policy: dict[str, Any] | None) -> Identity:
    """The consumer of a provision request. Raises EdcRejected (never theirs) or EdcLookupError (ask again)."""
    settings = svc.settings
    if settings.verify_with_management:
        facts = svc.edc.verify_transfer(transfer_process_id, asset_id)
        return Identity(facts.consumer_id, facts.contract_id, IdentitySource.MANAGEMENT)
    consumer = policy.assignee(grant_policy)
    if consumer:
        return Identity(consumer, None, IdentitySource.ASSIGNEE)
    if settings.fallback_consumer:
        return Identity(settings.fallback_consumer, None, IdentitySource.FALLBACK)
    raise EdcRejected("the policy names no assignee and no fallback consumer is configured")
