"""Quantities: the same values as the Kubernetes client for every valid form, refusals where apimachinery refuses."""

from __future__ import annotations

from decimal import Decimal

import pytest
from kubernetes.utils import parse_quantity as client_parse

from templates.quantity import parse_quantity

VALID = ["0", "1", "250m", "0.5", ".5", "1.", "+2", "-3", "100n", "7u", "16Ki", "16Mi", "1.5Gi", "2Ti", "1Pi", "1Ei",
         "1k", "1M", "3G", "4T", "5P", "6E", "1e3", "1E-2", "2e+2", "12345678901234567890"]  # fmt: skip


@pytest.mark.parametrize("text", VALID)
def test_valid_quantities_equal_the_kubernetes_clients(text: str) -> None:
    assert parse_quantity(text) == Decimal(client_parse(text))


@pytest.mark.parametrize(
    "text",
    [
        "",
        " 1",
        "1 ",
        "NaN",
        "Infinity",
        "-inf",
        "1ki",
        "1KB",
        "1mi",
        "Mi",
        "1e",
        "e3",
        "1.2.3",
        "0x10",
        "\uff11\uff10Mi",
        "\u0661Gi",
    ],
)
def test_what_kubernetes_refuses_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_quantity(text)


def test_absurd_exponents_are_refused() -> None:
    """Kubernetes parses "1e999"; no resource means it, and computing it is refused."""
    with pytest.raises(ValueError):
        parse_quantity("1e999")


def test_asset_quantities_still_checked() -> None:
    from templates.asset import quantity

    assert quantity("64Mi") == 64 * 1024 * 1024
    with pytest.raises(ValueError):
        quantity("lots")
