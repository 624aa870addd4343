"""The one transition table: complete, and enforced by ``move``."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from provisioner.infra.states import (
    GRANT_TRANSITIONS,
    HOLDING_GRANT_STATES,
    TENANT_TRANSITIONS,
    GrantState,
    IllegalTransition,
    TenantState,
    move,
)


@dataclass
class Row:
    state: str


def test_every_state_has_a_row_in_its_table() -> None:
    assert set(GRANT_TRANSITIONS) == set(GrantState)
    assert set(TENANT_TRANSITIONS) == set(TenantState)
    assert GRANT_TRANSITIONS[GrantState.DEPROVISIONED] == frozenset()  # the end
    # every holding grant can be ended, whatever the protocol asked before
    assert all(GrantState.DEPROVISIONING in GRANT_TRANSITIONS[s] for s in HOLDING_GRANT_STATES)


@pytest.mark.parametrize("table", [GRANT_TRANSITIONS, TENANT_TRANSITIONS])
def test_move_allows_exactly_the_table(table: dict) -> None:
    for current in table:
        for new in table:
            row = Row(str(current))
            if new == current:
                assert move(row, new) is False and row.state == current
            elif new in table[current]:
                assert move(row, new) is True and row.state == new
            else:
                with pytest.raises(IllegalTransition):
                    move(row, new)
                assert row.state == current  # refused: nothing changed
