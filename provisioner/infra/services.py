"""Everything the provisioner's work needs, built once per application (no module-level state).

The protocols' clients are not built here: the composition root (:func:`provisioner.app.build_services`) makes
them and passes them in as ``notifiers`` (and the registrations the registrar runs)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from provisioner.infra.apiprobe import ApiProbe
from provisioner.infra.catalogue import Catalogue
from provisioner.infra.connector import ManagementClient
from provisioner.infra.db import make_engine, session_factory
from provisioner.infra.kube import PARALLEL_APPLIES, Kube, load_api_client
from provisioner.infra.metrics import Metrics
from provisioner.infra.models import utcnow
from provisioner.infra.notify import Notifier
from provisioner.infra.s3users import S3Admin
from provisioner.infra.settings import ProvisionerSettings
from provisioner.infra.states import Protocol


def _no_hook(_step: str) -> None:
    return None


@dataclass
class Services:
    settings: ProvisionerSettings
    engine: Engine
    sessions: sessionmaker[Session]
    kube: Kube
    storage: S3Admin
    management: ManagementClient
    catalogue: Catalogue
    probe: ApiProbe
    # Who tells each protocol's connector about its grants.
    notifiers: dict[Protocol, Notifier] = field(default_factory=dict)
    # Our data plane registration with each signaling protocol's control plane (run by the registrar).
    registrations: dict[Protocol, Callable[[], None]] = field(default_factory=dict)
    metrics: Metrics = field(default_factory=Metrics)
    clock: Callable[[], datetime] = utcnow
    # Called with each step's name before it runs; tests use it to simulate a crash between steps.
    step_hook: Callable[[str], None] = _no_hook
    # Admits one new tenant at a time to a start slot (steps.api_start_slot): its count and its namespace's create
    # are one act within this process.
    start_gate: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def build(
        cls,
        settings: ProvisionerSettings,
        notifiers: dict[Protocol, Notifier],
        registrations: dict[Protocol, Callable[[], None]] | None = None,
        **overrides: object,
    ) -> Services:
        engine = make_engine(settings.database_url)
        values: dict[str, object] = {
            "settings": settings,
            "engine": engine,
            "sessions": session_factory(engine),
            "kube": Kube(
                load_api_client(settings.kubeconfig, settings.worker_threads * PARALLEL_APPLIES + 4),
                timeout=settings.kube_timeout_seconds,
            ),
            "storage": S3Admin(settings),
            "management": ManagementClient(settings),
            "catalogue": Catalogue.load(settings.assets_dir, settings.asset_map),
            "probe": ApiProbe(settings),
            "notifiers": notifiers,
            "registrations": registrations or {},
        }
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]

    def close(self) -> None:
        self.management.close()
        for notifier in self.notifiers.values():
            notifier.close()
        self.probe.close()
        # kubernetes ships py.typed but leaves ApiClient.close() unannotated.
        self.kube.api.close()  # type: ignore[no-untyped-call]
        self.engine.dispose()
