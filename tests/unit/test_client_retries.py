"""The client rides out outages (503 + Retry-After, refused connections) and never repeats a start that could
run twice."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from api.client import Client, ClientError, RetryPolicy


def client_for(
    answers: list[Callable[[httpx.Request], httpx.Response]], scheme: str | None = "Bearer"
) -> tuple[Client, list[httpx.Request], list[float]]:
    seen: list[httpx.Request] = []
    slept: list[float] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        request.read()
        return answers[min(len(seen), len(answers)) - 1](request)

    client = Client(
        "http://api.test/t/",
        "tok",
        scheme=scheme,
        retry=RetryPolicy(attempts=4),
        transport=httpx.MockTransport(handle),
        sleep=slept.append,
    )
    return client, seen, slept


def refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


def cut(request: httpx.Request) -> httpx.Response:
    raise httpx.RemoteProtocolError("server disconnected", request=request)


def busy(request: httpx.Request) -> httpx.Response:
    return httpx.Response(503, headers={"retry-after": "3"}, json={"title": "Storage Unavailable"})


def ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"id": "job-1", "items": []})


def test_reads_ride_out_refused_connections_and_503_with_retry_after() -> None:
    client, seen, slept = client_for([refused, busy, ok])
    assert client.job("job-1")["id"] == "job-1"
    assert len(seen) == 3 and slept == [0.5, 3.0]


def test_gives_up_after_the_policy_with_the_last_answer() -> None:
    client, seen, _ = client_for([busy])
    with pytest.raises(ClientError) as caught:
        client.job("job-1")
    assert caught.value.status == 503 and len(seen) == 4


def test_a_start_carries_one_key_over_all_its_attempts() -> None:
    client, seen, _ = client_for([cut, busy, ok])
    assert client.start("dummy")["id"] == "job-1"
    keys = {r.headers["idempotency-key"] for r in seen}
    assert len(seen) == 3 and len(keys) == 1 and keys != {""}


def test_through_edc_a_start_that_may_have_arrived_is_not_repeated() -> None:
    # EDC's data plane drops Idempotency-Key: a repeat could start a second job
    client, seen, _ = client_for([cut, ok], scheme=None)
    with pytest.raises(httpx.RemoteProtocolError):
        client.start("dummy")
    assert len(seen) == 1 and "idempotency-key" not in seen[0].headers
    client, seen, _ = client_for([refused, ok], scheme=None)  # never connected: nothing arrived
    assert client.start("dummy")["id"] == "job-1" and len(seen) == 2


def test_an_upload_is_sent_whole_again(tmp_path: Path) -> None:
    source = tmp_path / "in.bin"
    source.write_bytes(b"x" * 3000)
    client, seen, _ = client_for([cut, ok])
    client.upload("dummy", "in.bin", source)
    assert [len(r.content) for r in seen] == [3000, 3000]


def test_client_errors_are_not_retried() -> None:
    client, seen, _ = client_for([lambda r: httpx.Response(404, json={"title": "Not Found"})])
    with pytest.raises(ClientError):
        client.job("nope")
    assert len(seen) == 1


def test_a_download_retries_until_its_body_begins(tmp_path: Path) -> None:
    client, seen, _ = client_for([busy, lambda r: httpx.Response(200, content=b"result")])
    assert client.download("job-1", "result", tmp_path / "r").read_bytes() == b"result"
    assert len(seen) == 2
