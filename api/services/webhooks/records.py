"""One delivery record per job that has a webhook, in S3 beside the job's other records.

It is written when the job starts (the URL the event goes to, fixed then) and after every attempt (its outcome and
when the next one is due), so delivery is at least once across restarts and replicas: whoever finds the job
finished and the record still pending sends the event. The record is the job detail's ``webhook`` section.
"""

from __future__ import annotations

import secrets
from typing import Any

from api.backends.s3 import ObjectStore
from api.core.schemas import Delivery


def new_delivery(url: str) -> Delivery:
    return Delivery(url=url, event_id=f"msg_{secrets.token_hex(12)}")


async def read(storage: ObjectStore, job: str) -> Delivery | None:
    raw: Any = await storage.read_json(storage.keys.job_webhook(job))
    if raw is None:
        return None
    payload = raw.pop("payload", None) if isinstance(raw, dict) else None
    return Delivery.model_validate(raw).model_copy(update={"payload": payload})


async def write(storage: ObjectStore, job: str, delivery: Delivery) -> None:
    await storage.write_json(
        storage.keys.job_webhook(job), {**delivery.model_dump(mode="json"), "payload": delivery.payload}
    )
