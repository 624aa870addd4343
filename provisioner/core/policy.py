"""What we read from EDC's opaque policy JSON: the assignee and the contract's end.

EDC serializes ``Policy`` with Jackson (``assignee``, ``permissions[].constraints[]`` with
``leftExpression``/``rightExpression``) and, in JSON-LD form, ODRL (``odrl:assignee``, ``leftOperand`` …).
Both are read; anything else is ignored.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

END_OPERANDS = ("inforcedate", "expiry", "expires", "expiresat", "enddate", "contractend", "datetime")
UPPER_BOUND_OPERATORS = {"lt", "lteq", "leq", "less_than", "less_than_equal", "eq"}
_RELATIVE = re.compile(r"^contractAgreement\s*\+\s*(\d+)\s*([smhdw])\Z", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _scalar(value: Any) -> str | None:
    """A string out of a literal, a JSON-LD value/id object or a Jackson expression."""
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, dict):
        for key in ("value", "@value", "@id", "uid", "id"):
            if key in value:
                return _scalar(value[key])
    if isinstance(value, list) and len(value) == 1:
        return _scalar(value[0])
    return None


def _get(node: dict[str, Any], *names: str) -> Any:
    """A key by local name: ``assignee``, ``odrl:assignee`` or ``http://www.w3.org/ns/odrl/2/assignee``."""
    for key, value in node.items():
        local = re.split(r"[:/#]", key)[-1].lower()
        if local in names:
            return value
    return None


def assignee(policy: dict[str, Any] | None) -> str | None:
    if not policy:
        return None
    return _scalar(_get(policy, "assignee"))


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def _parse_time(text: str, now: datetime) -> datetime | None:
    rel = _RELATIVE.match(text)
    if rel:
        return now + timedelta(seconds=int(rel.group(1)) * _UNITS[rel.group(2).lower()])
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def contract_end(policy: dict[str, Any] | None, now: datetime) -> datetime | None:
    """The earliest upper bound of a date constraint (``inForceDate`` & co.), if any."""
    ends: list[datetime] = []
    for node in _walk(policy or {}):
        left = _scalar(_get(node, "leftexpression", "leftoperand"))
        if not left:
            continue
        local = re.split(r"[:/#]", left)[-1].lower()
        if local not in END_OPERANDS:
            continue
        op = (_scalar(_get(node, "operator")) or "").split(":")[-1].split("/")[-1].lower()
        if op not in UPPER_BOUND_OPERATORS:
            continue
        right = _scalar(_get(node, "rightexpression", "rightoperand"))
        when = _parse_time(right, now) if right else None
        if when is not None:
            ends.append(when.astimezone(UTC))
    return min(ends) if ends else None
