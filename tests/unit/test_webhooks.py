"""Webhook signing (checked against an independent HMAC), the rotation of secrets, and which targets may be called."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest

from api.core.errors import TargetRefused
from api.services.webhooks.config import WebhookConfig
from api.services.webhooks.signing import SECRET_PREFIX, new_secret, signature_header
from api.services.webhooks.targets import TargetPolicy, ascii_host

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def expected(secret: str, event_id: str, stamp: int, body: str) -> str:
    """What the Standard Webhooks spec says, written out by hand (not through the library the API uses)."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    mac = hmac.new(key, f"{event_id}.{stamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def test_signature_is_the_standard_one() -> None:
    secret = new_secret()
    assert secret.startswith(SECRET_PREFIX) and len(base64.b64decode(secret[len(SECRET_PREFIX) :])) == 32
    body = '{"type":"job.finished","data":{"id":"job-1"}}'
    assert signature_header([secret], "msg_1", 1_764_590_400, body) == expected(secret, "msg_1", 1_764_590_400, body)
    # any change to id, time or body gives another signature
    assert signature_header([secret], "msg_2", 1_764_590_400, body) != expected(secret, "msg_1", 1_764_590_400, body)
    assert signature_header([secret], "msg_1", 1_764_590_401, body) != expected(secret, "msg_1", 1_764_590_400, body)


def test_rotation_signs_with_both_secrets_until_the_old_one_expires() -> None:
    first = WebhookConfig().updated("https://example.com/hook", rotate=False, now=T0, overlap=timedelta(hours=1))
    assert len(first.secrets) == 1
    same = first.updated("https://example.com/other", rotate=False, now=T0, overlap=timedelta(hours=1))
    assert same.live(T0) == first.live(T0) and same.url == "https://example.com/other"
    rotated = first.updated(first.url, rotate=True, now=T0 + timedelta(minutes=1), overlap=timedelta(hours=1))
    live = rotated.live(T0 + timedelta(minutes=2))
    assert live[0] != first.live(T0)[0] and live[1] == first.live(T0)[0]
    header = signature_header(live, "msg_1", 100, "{}")
    assert header.split(" ") == [expected(live[0], "msg_1", 100, "{}"), expected(live[1], "msg_1", 100, "{}")]
    assert rotated.live(T0 + timedelta(hours=2)) == [live[0]]
    # a rotation after the old secret expired drops it from the record
    again = rotated.updated(None, rotate=True, now=T0 + timedelta(hours=3), overlap=timedelta(hours=1))
    assert len(again.secrets) == 2 and live[1] not in [s.value for s in again.secrets]


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/hook",  # http not allowed by this policy
        "ftp://example.com/hook",
        "https://user:pw@example.com/hook",
        "https:///nohost",
        "https://169.254.169.254/latest/meta-data",
        "https://10.0.0.5/hook",
        "https://127.0.0.1:8080/hook",
        "https://[::1]/hook",
        "https://[::ffff:10.0.0.1]/hook",
        "https://[fd00::1]/hook",
        "https://100.64.0.1/hook",
        "https://example.com:99999/hook",
        "https://[64:ff9b::a00:1]/hook",  # NAT64 of 10.0.0.1
        "https://[2002:a00:1::1]/hook",  # 6to4 of 10.0.0.1
        "https://example.com/a\x01b",
        "https://example.com/a b",
        "https://" + "a" * 2100 + ".com/",
    ],
)
def test_refused_urls(url: str) -> None:
    with pytest.raises(TargetRefused):
        TargetPolicy().check_url(url)


def test_public_and_allowed_addresses() -> None:
    policy = TargetPolicy.of(allow_http=True, networks=["10.88.0.0/16"])
    policy.check_url("http://10.88.0.1:8080/hook")
    policy.check_url("https://93.184.215.14/hook")
    with pytest.raises(TargetRefused):
        policy.check_url("http://10.89.0.1/hook")


def test_a_name_that_resolves_to_loopback_is_refused_at_delivery() -> None:
    with pytest.raises(TargetRefused, match="not a public address"):
        asyncio.run(TargetPolicy(allow_http=True).pin("http://localhost:9/hook"))


def test_international_names_go_on_the_wire_as_idna() -> None:
    assert ascii_host("bücher.example") == "xn--bcher-kva.example"
    TargetPolicy().check_url("https://bücher.example/hook")
    with pytest.raises(TargetRefused, match="not a valid domain name"):
        TargetPolicy().check_url("https://" + "ü" * 70 + ".example/hook")  # a label IDNA cannot encode


def test_pinned_target_calls_the_checked_address_with_the_original_host() -> None:
    policy = TargetPolicy.of(allow_http=True, networks=["127.0.0.0/8"])
    pinned = asyncio.run(policy.pin("http://localhost:8080/a/b?c=d"))
    assert pinned.url == "http://127.0.0.1:8080/a/b?c=d"
    assert pinned.host_header == "localhost:8080" and pinned.sni == "localhost"
    literal = asyncio.run(policy.pin("https://127.0.0.1/x"))
    assert literal.url == "https://127.0.0.1:443/x" and literal.sni is None
