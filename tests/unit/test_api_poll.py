"""A starting tenant API is looked at often while a new consumer may be waiting on it, and less often later."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from provisioner.steps.apipods import API_POLL_FAST_SECONDS, api_poll_delay

NOW = datetime(2026, 12, 6, 12, 0, 0, tzinfo=UTC)


def deployment(age: float) -> dict[str, object]:
    made = NOW - timedelta(seconds=age)
    return {"metadata": {"creationTimestamp": made.strftime("%Y-%m-%dT%H:%M:%SZ")}}


def test_a_young_api_is_polled_fast_an_older_one_slower() -> None:
    assert api_poll_delay(NOW, deployment(1)) == 0.1
    assert api_poll_delay(NOW, deployment(API_POLL_FAST_SECONDS + 1)) == 0.25
    assert api_poll_delay(NOW, deployment(API_POLL_FAST_SECONDS + 1)) > api_poll_delay(NOW, deployment(0))


def test_without_a_deployment_the_slow_pace() -> None:
    assert api_poll_delay(NOW, None) == 0.25
    assert api_poll_delay(NOW, {"metadata": {}}) == 0.25
