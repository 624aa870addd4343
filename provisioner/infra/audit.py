"""The audit trail: every step of a tenant's life, in the same database."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.orm import Session

from provisioner.infra.models import AuditEvent

log = logging.getLogger("provisioner.audit")  # a name operators route on: kept when the module moved


def record(
    session: Session, event: str, tenant_id: str | None = None, grant_id: int | None = None, **detail: Any
) -> None:
    """Add an audit event to ``session`` (committed with the caller's transaction)."""
    session.add(AuditEvent(event=event, tenant_id=tenant_id, grant_id=grant_id, detail=detail))
    log.info("%s tenant=%s grant=%s %s", event, tenant_id, grant_id, detail or "")
