"""Signed job-completion webhooks on the real stack: a real receiver that verifies every signature by hand, retries
until it answers, delivery across an API restart (the state is in Argo and S3), and the targets that are refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse

from api.app import create_app
from api.client import Client, ClientError
from devstack.servers import ThreadedServer, serve
from devstack.stack import kube
from templates.labels import LABEL_WEBHOOK
from tests.api.tenant import ApiTenant, api_tenant

pytestmark = pytest.mark.stack

TOLERANCE = 300  # seconds: what the docs tell receivers to accept


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    answered: int

    @property
    def event(self) -> dict:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A webhook receiver as a consumer would write one: it verifies the Standard Webhooks signature itself."""

    url: str = ""
    secrets: list[str] = field(default_factory=list)
    fail_first: dict[str, int] = field(default_factory=dict)
    held: set[str] = field(default_factory=set)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def verify(self, headers: dict[str, str], body: bytes) -> bool:
        event_id, stamp = headers.get("webhook-id", ""), headers.get("webhook-timestamp", "")
        if not event_id or not stamp.isdigit() or abs(time.time() - int(stamp)) > TOLERANCE:
            return False
        signed = f"{event_id}.{stamp}.".encode() + body
        offered = {part.split(",", 1)[1] for part in headers.get("webhook-signature", "").split() if "," in part}
        for secret in self.secrets:
            key = base64.b64decode(secret.removeprefix("whsec_"))
            if base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode() in offered:
                return True
        return False

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/hook/{name}")
        async def hook(name: str, request: Request) -> PlainTextResponse:
            body = await request.body()
            headers = {k.lower(): v for k, v in request.headers.items()}
            verified = self.verify(headers, body)
            with self.lock:
                if not verified:
                    status = 401
                elif name in self.held:
                    status = 503
                elif self.fail_first.get(name, 0) > 0:
                    self.fail_first[name] -= 1
                    status = 503
                else:
                    status = 200
                self.received.append(Received(name, headers, body, verified, status))
            text = f"received {headers.get('webhook-id')}" if status == 200 else f"not now ({status})"
            return PlainTextResponse(text, status_code=status)

        return app

    def for_job(self, job: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.event.get("data", {}).get("id") == job]

    def wait(self, job: str, answered: int = 200, timeout: float = 300) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.for_job(job)
            if any(r.answered == answered for r in got):
                return got
            time.sleep(0.2)
        raise AssertionError(f"no event of {job} answered {answered} within {timeout}s: {self.for_job(job)}")


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    recv = Receiver()
    with ThreadedServer(recv.app()) as server:
        recv.url = server.url
        yield recv


@pytest.fixture(scope="module")
def hooks(stack) -> Iterator[ApiTenant]:
    # The API the fixture serves never looks for finished jobs (once an hour): each test runs the deliverers it
    # needs, so that stopping one is a real restart. Loopback is allowed here because the receiver lives there.
    with api_tenant(
        stack,
        "hooks",
        webhook_allow_http=True,
        webhook_allowed_networks=["127.0.0.1/32"],
        webhook_poll_seconds=3600.0,
        webhook_retry_seconds=[0.5, 0.5, 1.0, 1.0],
    ) as tenant:
        yield tenant


@contextmanager
def deliverer(tenant: ApiTenant) -> Iterator[None]:
    """Another API instance of the same tenant, looking for finished jobs every 0.3 s."""
    with serve(create_app(tenant.settings.model_copy(update={"webhook_poll_seconds": 0.3}))):
        yield


def start_dummy(client: Client, webhook_url: str | None = None) -> str:
    client.upload_bytes("dummy", "env", b"SOURCE=/etc/os-release\nDESTINATION=/output/result\nSLEEPTIME=1\n")
    return str(client.start("dummy", webhook_url=webhook_url)["id"])


def workflow_label(stack, tenant: ApiTenant, job: str) -> str | None:
    api = kube.api_client(stack.kubeconfig)
    wf = kube.dynamic(api).resources.get(api_version="argoproj.io/v1alpha1", kind="Workflow")
    return (wf.get(name=job, namespace=tenant.namespace).metadata.labels or {}).get(LABEL_WEBHOOK)


def test_completion_event_is_signed_delivered_once_and_shown(stack, hooks: ApiTenant, receiver: Receiver) -> None:
    with hooks.client() as c:
        registered = c.set_webhook(f"{receiver.url}/hook/default")
        assert registered["secret"].startswith("whsec_") and registered["url"].endswith("/hook/default")
        assert c.webhook() == registered
        receiver.secrets = [registered["secret"]]
        with deliverer(hooks):
            job = start_dummy(c)
            got = receiver.wait(job)
            time.sleep(1.5)  # several more rounds: a delivered event is not sent again
        got = receiver.for_job(job)
        assert len(got) == 1, got
        hit = got[0]
        assert hit.verified and hit.path == "default"
        assert abs(time.time() - int(hit.headers["webhook-timestamp"])) < 120
        event = hit.event
        assert event["type"] == "job.finished" and event["data"]["id"] == job and event["data"]["state"] == "COMPLETE"
        assert event["data"]["asset"] == "dummy" and "steps" not in event["data"]
        detail = c.job(job)
        hook = detail["webhook"]
        assert hook["state"] == "delivered" and hook["attempts"] == 1 and hook["last_status"] == 200
        assert hook["event_id"] == hit.headers["webhook-id"] and hook["last_response"] == f"received {hook['event_id']}"
        assert hook["url"] == f"{receiver.url}/hook/default" and hook["next_attempt_at"] is None
        assert "payload" not in hook
        assert workflow_label(stack, hooks, job) == "settled"


def test_failed_attempts_are_retried_with_the_same_event_id(hooks: ApiTenant, receiver: Receiver) -> None:
    receiver.fail_first["flaky"] = 2
    with hooks.client() as c:
        receiver.secrets = [c.webhook()["secret"]]
        with deliverer(hooks):
            job = start_dummy(c, webhook_url=f"{receiver.url}/hook/flaky")
            got = receiver.wait(job)
        assert [r.answered for r in got] == [503, 503, 200]
        assert len({r.headers["webhook-id"] for r in got}) == 1
        assert len({r.body for r in got}) == 1  # the same event every time, signed anew
        assert all(r.verified and r.path == "flaky" for r in got)
        hook = c.job(job)["webhook"]
        assert hook["state"] == "delivered" and hook["attempts"] == 3 and hook["last_status"] == 200


def test_delivery_survives_an_api_restart(hooks: ApiTenant, receiver: Receiver) -> None:
    receiver.held.add("held")
    with hooks.client() as c:
        receiver.secrets = [c.webhook()["secret"]]
        job = start_dummy(c, webhook_url=f"{receiver.url}/hook/held")
        with deliverer(hooks):
            receiver.wait(job, answered=503)
        # That instance is gone, and what it knew with it; the record says what happened.
        pending = c.job(job)["webhook"]
        assert pending["state"] == "pending" and pending["attempts"] >= 1 and pending["last_status"] == 503
        assert pending["last_response"] == "not now (503)"
        receiver.held.discard("held")
        time.sleep(1.5)
        assert all(r.answered == 503 for r in receiver.for_job(job))  # nobody delivers while no instance runs
        with deliverer(hooks):
            got = receiver.wait(job)
        assert got[-1].answered == 200 and len({r.headers["webhook-id"] for r in got}) == 1
        assert c.job(job)["webhook"]["state"] == "delivered"


def test_targets_that_are_refused(hooks: ApiTenant, receiver: Receiver) -> None:
    with hooks.client() as c:
        for url in (
            "http://169.254.169.254/latest/meta-data",
            "https://user:secret@example.com/hook",
            "ftp://example.com/hook",
            "http://10.0.0.1/hook",
        ):
            with pytest.raises(ClientError) as refused:
                c.set_webhook(url)
            assert refused.value.status == 422, url
        with pytest.raises(ClientError) as refused:
            c.start("dummy", webhook_url="http://127.0.0.2:9/hook")  # loopback, but not the allowed address
        assert refused.value.status == 422 and "not a public address" in str(refused.value)
        before = {j["id"] for j in c.jobs()["items"]}
        c.delete_webhook()
        with pytest.raises(ClientError) as missing:
            c.webhook()
        assert missing.value.status == 404
        with pytest.raises(ClientError) as conflict:
            c.start("dummy", webhook_url=f"{receiver.url}/hook/default")
        assert conflict.value.status == 409 and "PUT /v1/webhook" in str(conflict.value)
        assert {j["id"] for j in c.jobs()["items"]} == before  # nothing was started by a refused request
        again = c.set_webhook(None)
        assert again["url"] is None and again["secret"] != receiver.secrets[0]
        restored = c.set_webhook(f"{receiver.url}/hook/default")
        rotated = c.set_webhook(rotate_secret=True, keep_url=True)
        assert rotated["url"] == restored["url"]  # a rotation alone keeps the URL
        assert rotated["secret"] != restored["secret"] and rotated["secrets_signing"] == 2
