"""Prometheus metrics, in a registry per application instance."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "wml_provisioner_requests", "EDC provisioner requests", ["type", "code"], registry=self.registry
        )
        self.callbacks = Counter(
            "wml_provisioner_callbacks", "Callbacks to EDC by outcome", ["kind", "outcome"], registry=self.registry
        )
        self.step_failures = Counter(
            "wml_provisioner_step_failures", "Failed provisioning steps", ["step"], registry=self.registry
        )
        self.provision_seconds = Histogram(
            "wml_provisioner_provision_seconds",
            "From the provision request to EDC accepting the callback",
            buckets=(0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
            registry=self.registry,
        )
        self.step_seconds = Histogram(
            "wml_provisioner_step_seconds",
            "Time in each provisioning or teardown step, per run (a step that waits ends its run early)",
            ["step"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.tenants = Gauge("wml_provisioner_tenants", "Tenants by state", ["state"], registry=self.registry)
        self.grants = Gauge("wml_provisioner_grants", "Grants by state", ["state"], registry=self.registry)
