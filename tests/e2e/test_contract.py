"""The `make run` path, checked: EDC request → tenant → API pod → real job → deprovision."""

from __future__ import annotations

import pytest

from tests.e2e.contract import play

pytestmark = pytest.mark.stack


def test_contract_end_to_end(stack) -> None:
    outcome = play(stack, echo=lambda _: None)
    assert outcome.callback_body["contentDataAddress"]["properties"]["type"] == "HttpData"
    assert outcome.state == "COMPLETE"
    assert any("sleeping" in line for line in outcome.log), outcome.log
    assert "ID=" in outcome.result
    assert outcome.namespace_gone
