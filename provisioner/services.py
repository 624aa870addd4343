"""Everything the provisioner's work needs, built once per application (no module-level state)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from provisioner.apiprobe import ApiProbe
from provisioner.catalogue import Catalogue
from provisioner.db import make_engine, session_factory
from provisioner.edc_client import EdcClient, HttpProvisionerNotifier
from provisioner.kube import PARALLEL_APPLIES, Kube, load_api_client
from provisioner.metrics import Metrics
from provisioner.models import utcnow
from provisioner.notify import Notifier
from provisioner.settings import ProvisionerSettings
from provisioner.signaling_client import DpsClient, SignalingClient
from provisioner.states import Protocol
from provisioner.storage import Storage


def _no_hook(_step: str) -> None:
    return None


@dataclass
class Services:
    settings: ProvisionerSettings
    engine: Engine
    sessions: sessionmaker[Session]
    kube: Kube
    storage: Storage
    edc: EdcClient
    catalogue: Catalogue
    signaling: SignalingClient
    dps: DpsClient
    probe: ApiProbe
    metrics: Metrics = field(default_factory=Metrics)
    clock: Callable[[], datetime] = utcnow
    # Called with each step's name before it runs; tests use it to simulate a crash between steps.
    step_hook: Callable[[str], None] = _no_hook
    # Admits one new tenant at a time to a start slot (steps.api_start_slot): its count and its namespace's create
    # are one act within this process.
    start_gate: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def build(cls, settings: ProvisionerSettings, **overrides: object) -> Services:
        engine = make_engine(settings.database_url)
        values: dict[str, object] = {
            "settings": settings,
            "engine": engine,
            "sessions": session_factory(engine),
            "kube": Kube(
                load_api_client(settings.kubeconfig, settings.worker_threads * PARALLEL_APPLIES + 4),
                timeout=settings.kube_timeout_seconds,
            ),
            "storage": Storage(settings),
            "edc": EdcClient(settings),
            "catalogue": Catalogue.load(settings.assets_dir, settings.asset_map),
            "signaling": SignalingClient(settings),
            "dps": DpsClient(settings),
            "probe": ApiProbe(settings),
        }
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]

    @property
    def notifiers(self) -> dict[Protocol, Notifier]:
        """Who tells each protocol's connector about its grants."""
        return {
            Protocol.HTTP_PROVISIONER: HttpProvisionerNotifier(self.edc),
            Protocol.SIGNALING: self.signaling,
            Protocol.DPS: self.dps,
        }

    def close(self) -> None:
        self.edc.close()
        self.signaling.close()
        self.dps.close()
        self.probe.close()
        # kubernetes ships py.typed but leaves ApiClient.close() unannotated.
        self.kube.api.close()  # type: ignore[no-untyped-call]
        self.engine.dispose()
