"""The storage safety net: objects no tenant owns any more, and multipart uploads nobody will finish.

Teardown deletes a tenant's objects (``retention: delete``), but an API pod still finishing an upload, or a
crash between the delete and the end of the run, can leave some behind. The sweeper lists the tenants' parent
prefix once per pass and deletes what belongs to tenants that are deleted (and were so for a grace period),
never a tenant the database holds in any other state. Prefixes of tenants the database has never heard of are
left alone unless the operator opts in (``sweep_unknown_tenants``). ``retention: keep`` sweeps nothing.
Incomplete multipart uploads are aborted by a bucket lifecycle rule where the store honours it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import select

from provisioner.infra import audit
from provisioner.infra.models import Tenant
from provisioner.infra.services import Services
from provisioner.infra.states import TenantState

log = logging.getLogger(__name__)
TENANT = "{tenant}"


@dataclass
class SweepReport:
    swept: dict[str, int] = field(default_factory=dict)  # tenant id -> objects deleted
    kept_unknown: list[str] = field(default_factory=list)  # prefixes of tenants the database does not know


def tenants_parent(template: str) -> str | None:
    """The prefix under which each tenant has its own "folder", when the template makes one."""
    parent, _, rest = template.strip("/").rpartition("/")
    return parent if rest == TENANT and TENANT not in parent else None


def sweep(svc: Services) -> SweepReport:
    report = SweepReport()
    settings = svc.settings
    parent = tenants_parent(settings.s3_prefix_template)
    if settings.retention != "delete" or parent is None:
        return report
    present = set(svc.storage.children(parent))
    if not present:
        return report
    cutoff = svc.clock() - timedelta(seconds=settings.sweep_grace_seconds)
    with svc.sessions() as session:
        rows = {t.id: (t.state, t.updated_at) for t in session.scalars(select(Tenant).where(Tenant.id.in_(present)))}
    for tenant_id in sorted(present):
        state, updated = rows.get(tenant_id, (None, None))
        if state is None and not settings.sweep_unknown_tenants:
            report.kept_unknown.append(tenant_id)
            continue
        if state is not None and (state != TenantState.DELETED or updated is None or updated > cutoff):
            continue
        removed = svc.storage.delete_prefix(f"{parent}/{tenant_id}")
        if removed:
            report.swept[tenant_id] = removed
            with svc.sessions.begin() as session:
                audit.record(session, "objects_swept", tenant_id if state else None, prefix=tenant_id, count=removed)
    if report.kept_unknown:
        log.warning("prefixes of tenants this database does not know (kept): %s", ", ".join(report.kept_unknown))
    return report
