"""HTTP ``Range`` for downloads: one ``bytes=start-end`` range (RFC 9110), parsed with bounded numbers."""

from __future__ import annotations

import re
from dataclasses import dataclass

from api.core.errors import RangeNotSatisfiable

# At most 18 digits: every byte offset of an S3 object fits, and int() never sees a giant number.
_RANGE = re.compile(r"^bytes=(\d{0,18})-(\d{0,18})\Z")


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # exclusive
    partial: bool

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.end - 1}/{size}"


def parse_range(header: str | None, size: int) -> ByteRange:
    """The bytes to send of an object of ``size`` bytes; the whole object without a header."""
    if not header:
        return ByteRange(0, size, partial=False)
    match = _RANGE.match(header.strip())
    if not match or match.groups() == ("", ""):
        raise RangeNotSatisfiable("only one bytes=start-end range is supported")
    first, last = match.groups()
    if first:
        start = int(first)
        end = min(size, int(last) + 1) if last else size
    else:
        start, end = max(0, size - int(last)), size
    if last and first and int(last) < int(first):
        return ByteRange(0, size, partial=False)  # an invalid range is ignored (RFC 9110, 14.1.1)
    if start >= size or start >= end:
        raise RangeNotSatisfiable(f"object has {size} bytes")
    return ByteRange(start, end, partial=True)
