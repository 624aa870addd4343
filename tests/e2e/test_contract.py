"""The `make run` path, checked: real EDC contract → provisioner pod → tenant API pod → job through EDC's
data plane → terminate → deprovision."""

from __future__ import annotations

import pytest

from tests.e2e.contract import play

pytestmark = pytest.mark.stack


def test_contract_end_to_end(stack) -> None:
    outcome = play(stack, echo=lambda _: None)
    assert outcome.tenant and outcome.namespace == f"wml-{outcome.tenant}"
    assert outcome.edr_endpoint.endswith("/public")  # the consumer only ever talked to EDC's data plane
    assert outcome.state == "COMPLETE"
    assert any("sleeping" in line for line in outcome.log), outcome.log
    assert "ID=" in outcome.result
    assert outcome.namespace_gone
    # EDC 0.10 stays DEPROVISIONING_REQUESTED after our 200 (see docs/operator-guide.md, "EDC versions")
    assert outcome.provider_states == ["STARTED", "DEPROVISIONING_REQUESTED"]
