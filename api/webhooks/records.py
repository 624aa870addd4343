"""One delivery record per job that has a webhook, in S3 beside the job's other records.

It is written when the job starts (the URL the event goes to, fixed then) and after every attempt (its outcome and
when the next one is due), so delivery is at least once across restarts and replicas: whoever finds the job
finished and the record still pending sends the event. The record is the job detail's ``webhook`` section.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from api.storage import Storage

RESPONSE_KEPT = 512  # characters of the receiver's answer shown in the job detail


class DeliveryState(StrEnum):
    PENDING = "pending"  # the job has not finished, or an attempt is due
    DELIVERED = "delivered"  # the receiver answered 2xx
    FAILED = "failed"  # every attempt failed, the receiver answered 410 Gone, or the tenant removed its webhook

    @property
    def final(self) -> bool:
        return self is not DeliveryState.PENDING


class Delivery(BaseModel):
    """The state of one job's completion event (also its public view in the job detail)."""

    model_config = ConfigDict(extra="ignore")

    url: str
    event_id: str = Field(description="The `webhook-id` of the event: the same on every attempt.")
    state: DeliveryState = DeliveryState.PENDING
    attempts: int = 0
    last_attempt_at: datetime | None = None
    next_attempt_at: datetime | None = None
    last_status: int | None = Field(default=None, description="HTTP status of the receiver's last answer.")
    last_response: str | None = Field(default=None, description=f"Its first {RESPONSE_KEPT} characters.")
    last_error: str | None = Field(default=None, description="Why the last attempt got no answer, if it did not.")
    payload: str | None = Field(default=None, exclude=True)  # the event body, fixed at the first attempt


def new_delivery(url: str) -> Delivery:
    return Delivery(url=url, event_id=f"msg_{secrets.token_hex(12)}")


async def read(storage: Storage, job: str) -> Delivery | None:
    raw: Any = await storage.read_json(storage.keys.job_webhook(job))
    if raw is None:
        return None
    payload = raw.pop("payload", None) if isinstance(raw, dict) else None
    return Delivery.model_validate(raw).model_copy(update={"payload": payload})


async def write(storage: Storage, job: str, delivery: Delivery) -> None:
    await storage.write_json(
        storage.keys.job_webhook(job), {**delivery.model_dump(mode="json"), "payload": delivery.payload}
    )
