"""Everything the provisioner's work needs, built once per application (no module-level state)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from provisioner.infra.apiprobe import ApiProbe
from provisioner.infra.catalogue import Catalogue
from provisioner.infra.connector import EdcClient, HttpProvisionerNotifier
from provisioner.infra.db import make_engine, session_factory
from provisioner.infra.kube import PARALLEL_APPLIES, Kube, load_api_client
from provisioner.infra.metrics import Metrics
from provisioner.infra.models import utcnow
from provisioner.infra.notify import Notifier
from provisioner.infra.s3users import Storage
from provisioner.infra.settings import ProvisionerSettings
from provisioner.infra.states import Protocol
from provisioner.protocols.signaling.client import DpsClient, SignalingClient


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
