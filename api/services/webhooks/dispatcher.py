"""The delivery loop: every ``webhook_poll_seconds`` it lists this tenant's finished jobs whose event is not settled
(a label on the Workflow), and for each whose record says an attempt is due, sends the event and records the answer.

Failed attempts are retried after ``webhook_retry_seconds`` (one delay per retry); a 2xx settles the event, so does
410 Gone (the receiver asks to stop) or the last retry failing. Everything the loop needs to go on is in Argo (which
jobs finished) and S3 (each record), so a restarted or second API instance picks up where another stopped: an event
may arrive twice (always with the same ``webhook-id``), never not at all while its retries last.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx

from api.core.errors import (
    ArgoNotFound,
    ArgoUnavailable,
    KubeRejected,
    KubeUnavailable,
    StorageUnavailable,
    TargetRefused,
)
from api.core.schemas import RESPONSE_KEPT, Delivery
from api.core.states import DeliveryState
from api.services import loops
from api.services.jobviews import settled
from api.services.tenant import TenantContext
from api.services.webhooks import config as webhook_config
from api.services.webhooks import records
from api.services.webhooks.signing import signature_header
from api.services.webhooks.targets import TargetPolicy

log = logging.getLogger("api.webhooks")  # a name operators route on: kept when the module moved
EVENT_TYPE = "job.finished"
USER_AGENT = "workflow-middlelayer-webhooks/1"
ANSWER_READ_MAX = 4096
PARALLEL = 8
RETRYABLE = (ArgoUnavailable, StorageUnavailable, KubeUnavailable)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Dispatcher:
    def __init__(
        self,
        tenant: TenantContext,
        http: httpx.AsyncClient,
        policy: TargetPolicy,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.tenant = tenant
        self.http = http
        self.policy = policy
        self.now = now
        self.settings = tenant.settings
        # Hints only (the records in S3 are the truth): skip reading records that cannot be due yet.
        self._not_before: dict[tuple[str, str], datetime] = {}
        self._settled: set[tuple[str, str]] = set()
        self._gate = asyncio.Semaphore(PARALLEL)

    async def run(self) -> None:
        await loops.forever(self.tick, lambda: self.settings.webhook_poll_seconds, "webhook delivery")

    async def tick(self) -> int:
        """One round; returns how many events were sent (successfully or not)."""
        listed = dict(await self.tenant.argo.finished_with_pending_webhook())  # name -> uid
        # Hints are per Workflow (uid): a job id comes back when an Idempotency-Key is reused after a delete.
        current = {(name, uid) for name, uid in listed.items()}
        self._settled &= current
        self._not_before = {k: v for k, v in self._not_before.items() if k in current}
        results = await asyncio.gather(
            *(self._consider(name, uid) for name, uid in listed.items() if (name, uid) not in self._settled),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, RETRYABLE):
                log.error("webhook delivery failed: %s", type(result).__name__, exc_info=result)
        return sum(1 for r in results if r is True)

    async def _consider(self, job: str, uid: str) -> bool:
        key = (job, uid)
        hint = self._not_before.get(key)
        if hint is not None and hint > self.now():
            return False
        async with self._gate:
            delivery = await records.read(self.tenant.storage, job)
            if delivery is None or delivery.state.final:
                await self._settle(key)
                return False
            if delivery.next_attempt_at is not None and delivery.next_attempt_at > self.now():
                self._not_before[key] = delivery.next_attempt_at
                return False
            try:
                delivery = await self.attempt(job, delivery)
            except ArgoNotFound:
                return False  # deleted meanwhile: its records went with it
            await records.write(self.tenant.storage, job, delivery)
            if delivery.state.final:
                await self._settle(key)
            elif delivery.next_attempt_at is not None:
                self._not_before[key] = delivery.next_attempt_at
            return True

    async def attempt(self, job: str, delivery: Delivery) -> Delivery:
        """Send the event once; the record as it stands afterwards (not yet stored)."""
        now = self.now()
        cfg = await webhook_config.load(self.tenant.storage)
        keys = cfg.live(now) if cfg else []
        if not keys:
            return delivery.model_copy(
                update={
                    "state": DeliveryState.FAILED,
                    "last_attempt_at": now,
                    "last_error": "the tenant's webhook was removed: no secret to sign the event with",
                }
            )
        if delivery.payload is None:
            delivery = delivery.model_copy(update={"payload": await self._payload(job, now)})
        payload = delivery.payload or ""
        stamp = int(now.timestamp())
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": delivery.event_id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": signature_header(keys, delivery.event_id, stamp, payload),
        }
        status: int | None = None
        answer: str | None = None
        error: str | None = None
        try:
            # One limit for the whole attempt: a receiver that trickles its answer cannot hold the loop.
            async with asyncio.timeout(self.settings.webhook_timeout_seconds):
                target = await self.policy.pin(delivery.url)
                headers["host"] = target.host_header
                extensions = {"sni_hostname": target.sni} if target.sni else {}
                request = self.http.build_request(
                    "POST", target.url, content=payload, headers=headers, extensions=extensions
                )
                response = await self.http.send(request, stream=True)
                try:
                    status, answer = response.status_code, await _answer(response)
                finally:
                    await response.aclose()
        except TargetRefused as exc:
            error = str(exc)
        except TimeoutError:
            error = f"no answer within {self.settings.webhook_timeout_seconds:g} s"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:300] if str(exc) else type(exc).__name__
        except (ValueError, UnicodeError, httpx.InvalidURL) as exc:  # a URL that cannot be sent: a failed attempt
            error = f"the webhook URL cannot be requested: {type(exc).__name__}"
        attempts = delivery.attempts + 1
        state, next_at = DeliveryState.PENDING, None
        if status is not None and 200 <= status < 300:
            state = DeliveryState.DELIVERED
        elif status == 410:
            state = DeliveryState.FAILED
        elif attempts - 1 < len(self.settings.webhook_retry_seconds):
            next_at = now + timedelta(seconds=self.settings.webhook_retry_seconds[attempts - 1])
        else:
            state = DeliveryState.FAILED
        log.info(
            "webhook attempt",
            extra={"tenant": self.settings.tenant, "status": status, "cause": error, "job": job},
        )
        return delivery.model_copy(
            update={
                "state": state,
                "attempts": attempts,
                "last_attempt_at": now,
                "next_attempt_at": next_at,
                "last_status": status,
                "last_response": answer,
                "last_error": error,
            }
        )

    async def _payload(self, job: str, now: datetime) -> str:
        wf = await self.tenant.argo.get(job)
        view = await settled(self.tenant, wf, strict=True)  # S3 away: no event yet, rather than a wrong state
        event = {
            "type": EVENT_TYPE,
            "timestamp": (view.finished_at or now).isoformat(),
            "data": view.model_dump(mode="json", exclude={"steps", "webhook"}),
        }
        return json.dumps(event, separators=(",", ":"), sort_keys=True)

    async def _settle(self, key: tuple[str, str]) -> None:
        """Take the job off the list the loop reads (best effort: this process remembers it anyway)."""
        self._settled.add(key)
        self._not_before.pop(key, None)
        with contextlib.suppress(KubeUnavailable, KubeRejected):
            await self.tenant.kube.settle_webhook(key[0])


async def _answer(response: httpx.Response) -> str:
    """The start of the receiver's answer, as text: enough to see why it refused, never more than is kept."""
    body = b""
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) >= ANSWER_READ_MAX:
            break
    return body.decode("utf-8", errors="replace")[:RESPONSE_KEPT]
