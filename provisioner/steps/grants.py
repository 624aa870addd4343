"""Grant transitions the steps make: a grant that ends is deprovisioned, and the notice its connector is owed
is marked due (the delivery in :mod:`provisioner.core.delivery` sends it)."""

from __future__ import annotations

from provisioner.infra.models import Grant
from provisioner.infra.services import Services
from provisioner.infra.states import EndedBy, EndNotice, GrantState, Protocol, move


def grant_ended(svc: Services, grant: Grant) -> None:
    """Deprovisioned. The connector hears of it when it asked for it (the HTTP provisioner's deprovision
    callback) or when the end was ours (expiry, operator) and its protocol has a way to say so."""
    move(grant, GrantState.DEPROVISIONED)
    if grant.protocol == Protocol.HTTP_PROVISIONER:
        wants_notice = grant.ended_by == EndedBy.DEPROVISION and svc.settings.deprovision_callback
    else:
        wants_notice = grant.ended_by in (EndedBy.EXPIRY, EndedBy.ADMIN)
    if wants_notice:
        grant.deprovision_callback = EndNotice.DUE
        grant.attempts = 0
        grant.next_attempt_at = None
    elif grant.deprovision_callback == EndNotice.DUE:
        grant.deprovision_callback = None  # e.g. a failure notice still due: the connector ended it itself
