"""Keeps our data plane registered with the control plane(s).

Signaling: every ``signaling_register_interval_seconds`` we look whether the control plane still knows us and
register only when it forgot us (a restart with in-memory stores): EDC resets a re-registered data plane to
REGISTERED until its next health check and selects only AVAILABLE ones. DPS has no way to ask, so we register
once at start-up (a PUT replaces the registration) and again only after a failure. Failures are logged and
retried within seconds."""

from __future__ import annotations

import asyncio
import logging

from provisioner.infra.services import Services
from provisioner.infra.states import Protocol
from provisioner.protocols.common import RegistrationError

log = logging.getLogger(__name__)


class Registrar:
    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self.registered: dict[str, bool] = {}

    @property
    def wanted(self) -> bool:
        settings = self.svc.settings
        return (settings.signaling_enabled and bool(settings.signaling_control_url)) or (
            settings.dps_enabled and bool(settings.dps_registration_url)
        )

    def register_once(self) -> bool:
        settings, ok = self.svc.settings, True
        registrations = self.svc.registrations
        targets = []
        signaling, dps = registrations.get(Protocol.SIGNALING), registrations.get(Protocol.DPS)
        if settings.signaling_enabled and settings.signaling_control_url and signaling is not None:
            targets.append(("signaling", signaling))
        if settings.dps_enabled and settings.dps_registration_url and not self.registered.get("dps") and dps:
            targets.append(("dps", dps))
        for name, register in targets:
            try:
                register()
                if not self.registered.get(name):
                    log.info("registered as data plane %r (%s)", settings.signaling_dataplane_id, name)
                self.registered[name] = True
            except RegistrationError as exc:
                self.registered[name] = False
                ok = False
                log.warning("data plane registration (%s) failed, retrying: %s", name, exc)
        return ok

    async def run_forever(self) -> None:
        interval = self.svc.settings.signaling_register_interval_seconds
        while True:
            ok = await asyncio.to_thread(self.register_once)
            await asyncio.sleep(interval if ok else min(interval, 2.0))
