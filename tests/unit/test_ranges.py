"""Range parsing: every answer is a range or a 416, never a crash."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.core.errors import RangeNotSatisfiable
from api.web.ranges import ByteRange, parse_range


@pytest.mark.parametrize(
    "header,size,expected",
    [
        (None, 10, ByteRange(0, 10, False)),
        ("bytes=0-", 10, ByteRange(0, 10, True)),
        ("bytes=2-4", 10, ByteRange(2, 5, True)),
        ("bytes=2-400", 10, ByteRange(2, 10, True)),
        ("bytes=-3", 10, ByteRange(7, 10, True)),
        ("bytes=-30", 10, ByteRange(0, 10, True)),
        ("bytes=5-2", 10, ByteRange(0, 10, False)),  # invalid: ignored, the whole object (RFC 9110)
    ],
)
def test_ranges(header: str | None, size: int, expected: ByteRange) -> None:
    assert parse_range(header, size) == expected


@pytest.mark.parametrize("header", ["bytes=10-", "bytes=-", "bytes=0-1,3-4", "items=0-1", "bytes=" + "9" * 4300 + "-"])
def test_unsatisfiable(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, 10)


@given(st.text(max_size=60), st.integers(min_value=0, max_value=2**40))
def test_any_header_is_a_range_inside_the_object_or_a_416(header: str, size: int) -> None:
    try:
        got = parse_range(header, size)
    except RangeNotSatisfiable:
        return
    assert 0 <= got.start < got.end <= size or (not got.partial and got == ByteRange(0, size, False))
