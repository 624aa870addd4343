"""The tenant's webhook settings: its default URL and its signing secrets, one JSON object in S3.

S3, not process memory or a Kubernetes object: every API replica reads the same, a restart loses nothing, and the
API's S3 user is already limited to the tenant's prefix. The executor's credentials cannot write there (they write
``exec/`` only), so a job cannot change where its own events go or what signs them.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict

from api.backends.s3 import ObjectStore
from api.services.webhooks.signing import new_secret


class SigningSecret(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    value: str
    created_at: datetime
    expires_at: datetime | None = None  # set when a newer secret replaced it: both sign until then


class WebhookConfig(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    url: str | None = None
    secrets: tuple[SigningSecret, ...] = ()

    def live(self, now: datetime) -> list[str]:
        """The secrets that sign an event sent at ``now``, newest first."""
        return [s.value for s in self.secrets if s.expires_at is None or s.expires_at > now]

    def current(self) -> SigningSecret | None:
        return self.secrets[0] if self.secrets else None

    def updated(self, url: str | None, rotate: bool, now: datetime, overlap: timedelta) -> WebhookConfig:
        """With ``url`` as the default; a first secret, or a new one when asked (the old one signs for ``overlap``)."""
        keep = [s for s in self.secrets if s.expires_at is None or s.expires_at > now]
        if not keep or rotate:
            retired = [s.model_copy(update={"expires_at": s.expires_at or now + overlap}) for s in keep]
            keep = [SigningSecret(value=new_secret(), created_at=now), *retired]
        return WebhookConfig(url=url, secrets=tuple(keep))


async def load(storage: ObjectStore) -> WebhookConfig | None:
    raw = await storage.read_json(storage.keys.webhook_config())
    return WebhookConfig.model_validate(raw) if raw is not None else None


async def save(storage: ObjectStore, config: WebhookConfig) -> None:
    await storage.write_json(storage.keys.webhook_config(), config.model_dump(mode="json"))


async def remove(storage: ObjectStore) -> None:
    await storage.delete_key(storage.keys.webhook_config())
