"""Kubernetes quantities ("250m", "16Mi", "1e3") as exact numbers, by apimachinery's grammar.

Our own few lines rather than ``kubernetes.utils.parse_quantity``: importing that loads the whole Kubernetes client
(~150 ms, tens of MiB) into every tenant API pod, which parses quantities but never talks to Kubernetes through it;
and this grammar is Kubernetes' own, stricter than the client's (which takes "NaN", "Infinity" or " 1 ").
"""

from __future__ import annotations

import re
from decimal import Decimal

_QUANTITY = re.compile(
    r"(?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+))"
    r"(?:(?P<binary>[KMGTPE]i)|(?P<exponent>[eE][+-]?\d+)|(?P<decimal>[numkMGTPE]))?",
    re.ASCII,  # fullwidth or Arabic-Indic digits are no quantity, though Decimal would read them
)
_DECIMAL = {"n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_MAX_EXPONENT = 100  # "1e999999999" parses in Kubernetes but means no resource: refused before computing it


def parse_quantity(text: str) -> Decimal:
    """The value of a quantity; ValueError when ``text`` is not one."""
    found = _QUANTITY.fullmatch(text)
    if found is None:
        raise ValueError(f"{text!r} is not a Kubernetes quantity")
    number = Decimal(found["number"])
    if found["binary"]:
        return number * Decimal(2 ** _BINARY[found["binary"]])
    if found["exponent"]:
        exponent = int(found["exponent"][1:])
        if abs(exponent) > _MAX_EXPONENT:
            raise ValueError(f"{text!r}: exponent out of range")
        return number.scaleb(exponent)
    if found["decimal"]:
        return number.scaleb(_DECIMAL[found["decimal"]])
    return number
