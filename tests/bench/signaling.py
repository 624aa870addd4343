"""Transfer request -> the consumer holds a working endpoint, through a real EDC 0.15.1 pair (data plane signaling).

Measured from the consumer's ``POST /v3/transferprocesses`` to the first ``GET /v1/assets`` the tenant API
answers with the token from the consumer's ``TransferProcessStarted`` event: DSP, the provider's signaling
``start``, our tenant work, the answer's way back over DSP, the event, and the API pod accepting the token.
Goals: new consumer <= 2 s, consumer who already has a tenant <= 0.5 s, in the shape we ship (two API pods per
tenant). Prints medians, p90 and their ratios, and every setting it changes from the shipped defaults, with why.
``python -m tests.bench signaling``.
"""

from __future__ import annotations

import statistics
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from devstack.demo.contract import _registered
from devstack.demo.events import Events
from devstack.edc.connector import CONTEXT, EDC, V0_15, Connector, ensure_runtime
from devstack.servers import ThreadedServer, free_port
from devstack.stack import kube
from devstack.stack.app_image import ensure_app_image
from devstack.stack.launcher import ensure_stack
from provisioner.app import build_services, create_app
from provisioner.infra.services import Services
from provisioner.infra.settings import ProvisionerSettings
from tests.provisioner.helpers import db_grants, stack_settings
from tests.provisioner.servers import wait_for
from tests.support.edc import cleanup

GOALS = {"new consumer": 2.0, "existing tenant": 0.5}
ANSWERED: list[float] = []  # transfer request -> the started event (before the API pod takes the token)
OURS: list[float] = []  # the provisioner's share: start received -> answered with the endpoint
ROUNDS = 10
# What this bench sets otherwise than the provisioner's shipped defaults, and why (printed with the figures).
CHANGED = {
    "api_requests_cpu": "10m: the local overlay's value (argo/overlays/local), many tenants on one 2-core node",
    "reconcile_interval_seconds": "0.5: the suite's fast retries (helpers.stack_settings); a start does not wait on it",
    "retry_base_seconds": "0.2, retry_max_seconds 2.0: the suite's fast retries, for a failed step only",
    "signaling_register_interval_seconds": "2.0: the data plane registers with the bench's fresh connector sooner",
    "leader_lease_name": "a lease of the bench's own, so it leads at once",
}


def _working(endpoint: str, token: str) -> bool:
    try:
        url = endpoint  # the ingress URL
        return (
            httpx.get(
                f"{url.rstrip('/')}/v1/assets", headers={"Authorization": f"Bearer {token}"}, timeout=2
            ).status_code
            == 200
        )
    except httpx.HTTPError:
        return False


def _transfer(
    provider: Connector, consumer: Connector, events: Events, events_url: str, api: object, svc: Services
) -> float:
    agreement = consumer.negotiate(provider, "dummy")
    started = time.monotonic()
    process = consumer.transfer(provider, agreement, callbacks=[events_url])
    try:
        event = wait_for(lambda: events.started(process), 120, 0.02, "the started event")
    except AssertionError:
        theirs = provider.provider_transfer(process) or {}
        ours = [
            (g.id, g.state, g.delivery, g.error) for g in db_grants(svc) if g.transfer_process_id == theirs.get("@id")
        ]
        raise AssertionError(
            f"no started event: provider {theirs.get('state')} {theirs.get('errorDetail')}; ours {ours}"
        ) from None
    props = event["payload"]["dataAddress"]["properties"]
    answered = time.monotonic() - started
    provider_process = (provider.provider_transfer(process) or {}).get("@id")
    [grant] = [g for g in db_grants(svc) if g.transfer_process_id == provider_process]
    assert grant.called_back_at is not None
    OURS.append((grant.called_back_at - grant.created_at).total_seconds())
    wait_for(lambda: _working(props[f"{EDC}endpoint"], props[f"{EDC}authorization"]), 300, 0.05, "a working API")
    ANSWERED.append(answered)
    return time.monotonic() - started


def _step_seconds(svc: Services) -> dict[str, tuple[float, int]]:
    """Seconds and runs of each provisioning step, from the provisioner's own histogram (as /metrics shows it)."""
    totals: dict[str, list[float]] = {}
    for metric in svc.metrics.registry.collect():
        if metric.name != "wml_provisioner_step_seconds":
            continue
        for sample in metric.samples:
            if sample.name.endswith(("_sum", "_count")):
                entry = totals.setdefault(sample.labels["step"], [0.0, 0.0])
                entry[0 if sample.name.endswith("_sum") else 1] = sample.value
    return {name: (total, int(count)) for name, (total, count) in totals.items()}


def run() -> None:
    stack = ensure_stack()
    image = ensure_app_image()
    runtime = ensure_runtime(release=V0_15)
    api = kube.api_client(stack.kubeconfig)
    key = f"bench-{uuid.uuid4().hex[:8]}"
    samples: dict[str, list[float]] = {label: [] for label in GOALS}
    events = Events()
    with tempfile.TemporaryDirectory() as tmp, events.serve() as events_url:
        work = Path(tmp)
        provider = Connector("provider", key, work, release=V0_15)
        port = free_port()
        settings = stack_settings(
            stack,
            f"sqlite:///{work / 'bench.db'}",
            "http://unused",
            api_image=image,
            edc_api_key=key,
            edc_management_url=provider.management,
            signaling_enabled=True,
            signaling_control_url=provider.control,
            signaling_control_key=provider.control_key,
            signaling_self_url=f"http://127.0.0.1:{port}",
            signaling_register_interval_seconds=2.0,
            # the shipped shape: the suite's helpers run one API pod per test tenant, the product ships two
            api_replicas=ProvisionerSettings.model_fields["api_replicas"].default,
        )
        print(
            f"signaling bench: api_replicas={settings.api_replicas} (the shipped default); changed from the defaults:"
        )
        for name, why in CHANGED.items():
            print(f"  {name} = {getattr(settings, name)!r}: {why}")
        svc = build_services(settings)
        try:
            with provider.start(runtime), ThreadedServer(create_app(settings, services=svc), port=port):
                asset = {
                    "@context": CONTEXT,
                    "@id": "dummy",
                    "properties": {},
                    "dataAddress": {"type": "WorkflowMiddleLayer"},
                }
                provider.call("POST", "/v3/assets", asset)
                provider.open_contract("dummy")
                wait_for(lambda: _registered(provider), 120, 0.5, "our data plane AVAILABLE")
                for round_ in range(ROUNDS + 1):  # the first new consumer warms up
                    if round_ == 1:
                        ANSWERED.clear()
                        OURS.clear()
                    with Connector(f"bench-consumer-{uuid.uuid4().hex[:8]}", key, work, release=V0_15).start(
                        runtime
                    ) as consumer:
                        fresh = _transfer(provider, consumer, events, events_url, api, svc)
                        again = _transfer(provider, consumer, events, events_url, api, svc)
                    if round_:
                        samples["new consumer"].append(fresh)
                        samples["existing tenant"].append(again)
            steps = _step_seconds(svc)
        finally:
            cleanup(svc)
            svc.close()
    print(
        "signaling: the provisioner's time per step over all runs, the warm-up's included (s, runs): "
        + ", ".join(f"{name} {total:.2f}/{count}" for name, (total, count) in steps.items())
    )
    fresh_answers, again_answers = ANSWERED[0::2], ANSWERED[1::2]
    print(
        f"signaling (EDC 0.15.1): transfer request -> started event (our answer over DSP), median: new consumer "
        f"{statistics.median(fresh_answers):.2f} s, existing tenant {statistics.median(again_answers):.2f} s; "
        f"of which the provisioner (start received -> answered): {statistics.median(OURS[0::2]):.2f} s and "
        f"{statistics.median(OURS[1::2]):.2f} s (new consumers' events: {', '.join(f'{x:.2f}' for x in fresh_answers)})"
    )
    for label, goal in GOALS.items():
        median = statistics.median(samples[label])
        p90 = statistics.quantiles(samples[label], n=10)[-1] if len(samples[label]) > 1 else median
        print(
            f"signaling (EDC 0.15.1, {settings.api_replicas} API pods): transfer request -> working endpoint, {label}: "
            f"median {median:.2f} s, p90 {p90:.2f} s "
            f"(n={len(samples[label])}: {', '.join(f'{x:.2f}' for x in samples[label])}); "
            f"goal <= {goal:.1f} s: ratio {median / goal:.2f}"
        )


if __name__ == "__main__":
    run()
