"""Multipart parts are S3's minimum, grown so that S3's 10,000 parts hold the largest object the cap allows."""

from __future__ import annotations

from api.backends.s3upload import MAX_PARTS, PART, part_size


def test_parts_hold_the_cap_within_the_part_limit() -> None:
    assert part_size(0) == part_size(1024) == PART
    for limit in (PART * MAX_PARTS, PART * MAX_PARTS + 1, 100 * 1024**3, 5 * 1024**4):
        assert part_size(limit) >= PART and part_size(limit) * MAX_PARTS >= limit
    assert part_size(PART * MAX_PARTS + 1) > PART
