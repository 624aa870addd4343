"""The tenant-API probe reads answers right: only a 200 to the token is "answers"; the token never leaks."""

from __future__ import annotations

import httpx
import pytest

from provisioner.infra.apiprobe import PROBE_PATH, Answer, ApiProbe
from provisioner.infra.settings import ProvisionerSettings

SETTINGS = ProvisionerSettings(api_url_template="https://edge.example/tenants/{tenant}/")
TOKEN = "secret-token-value"


def probe_with(status: int, content_type: str = "application/json", fail: bool = False) -> tuple[ApiProbe, list[str]]:
    seen: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.url} {request.headers.get('authorization')}")
        if fail:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(status, headers={"content-type": content_type}, content=b"{}")

    return ApiProbe(SETTINGS, transport=httpx.MockTransport(handle)), seen


@pytest.mark.parametrize(
    ("status", "content_type", "fail", "expected"),
    [
        (200, "application/json", False, Answer.OK),
        (401, "application/problem+json", False, Answer.TOKEN_UNKNOWN),
        (401, "text/plain", False, Answer.UNREACHABLE),  # not our API answering (a proxy's page)
        (404, "text/plain", False, Answer.UNREACHABLE),  # the ingress has no route yet
        (503, "application/problem+json", False, Answer.UNREACHABLE),
        (0, "", True, Answer.UNREACHABLE),
    ],
)
def test_answers(status: int, content_type: str, fail: bool, expected: Answer) -> None:
    probe, seen = probe_with(status, content_type, fail)
    answer, why = probe.check("abc", TOKEN)
    assert answer is expected
    assert seen == [f"https://edge.example/tenants/abc/{PROBE_PATH} Bearer {TOKEN}"]
    assert TOKEN not in why


def test_probe_url_may_differ_from_the_handed_out_one() -> None:
    settings = SETTINGS.model_copy(update={"api_probe_url_template": "http://wml-api.{namespace}.svc:8080/t/{tenant}"})
    assert settings.api_probe_url_for("abc") == "http://wml-api.wml-abc.svc:8080/t/abc"
    assert settings.api_url_for("abc") == "https://edge.example/tenants/abc/"


def test_a_callback_address_that_is_no_url_matches_nothing() -> None:
    from provisioner.infra.connector import same_url

    assert same_url("http://edc:8080/control/", "http://edc:8080/control")
    assert not same_url("\udb92\udf52v\u0016\r", "http://edc:8080/control")  # was a 500 (fuzzing)
    assert not same_url("http://edc:8080/control", "http://[::1/x")
