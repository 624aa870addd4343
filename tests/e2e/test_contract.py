"""The `make run` path, checked: real EDC 0.15.1 contract → the provisioner pod as its data plane → tenant API
pod → job with the transfer's token → terminate → the tenant gone."""

from __future__ import annotations

import pytest

from devstack.demo.contract import play

pytestmark = pytest.mark.stack


def test_contract_end_to_end(stack) -> None:
    outcome = play(stack, echo=lambda _: None)
    assert outcome.tenant and outcome.namespace == f"wml-{outcome.tenant}"
    # our tenant API, through the stack's ingress controller (the local overlay's URL template)
    assert outcome.edr_endpoint == f"{stack.ingress_url}/tenants/{outcome.tenant}/"
    assert outcome.state == "COMPLETE"
    assert any("sleeping" in line for line in outcome.log), outcome.log
    assert "ID=" in outcome.result
    assert outcome.namespace_gone
    assert outcome.provider_states[0] == "STARTED" and outcome.provider_states[-1] in ("TERMINATED", "DEPROVISIONED")
