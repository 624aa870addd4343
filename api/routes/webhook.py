"""The tenant's webhook: its default URL for job completion events and the secret that signs them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, status

from api.core.errors import HTTPProblem, TargetRefused, not_found
from api.core.schemas import WebhookSettings, WebhookUpdate
from api.routes.deps import TenantDep
from api.services.tenant import TenantContext
from api.services.webhooks import config as webhook_config
from api.services.webhooks.config import WebhookConfig
from api.services.webhooks.dispatcher import utcnow

router = APIRouter(prefix="/v1/webhook", tags=["webhook"])


def _view(cfg: WebhookConfig) -> WebhookSettings:
    current = cfg.current()
    if current is None:
        raise not_found("a webhook")
    return WebhookSettings(url=cfg.url, secret=current.value, secrets_signing=len(cfg.live(utcnow())))


async def _existing(tenant: TenantContext) -> WebhookConfig:
    cfg = await webhook_config.load(tenant.storage)
    if cfg is None:
        raise not_found("a webhook")
    return cfg


NONE: dict[int | str, dict[str, Any]] = {404: {"description": "no webhook is registered"}}


@router.get("", response_model=WebhookSettings, summary="The tenant's webhook and its signing secret", responses=NONE)
async def get_webhook(tenant: TenantDep) -> WebhookSettings:
    return _view(await _existing(tenant))


@router.put(
    "",
    response_model=WebhookSettings,
    summary="Register the default webhook (or none), get or rotate its signing secret",
    responses={422: {"description": "the URL may not be called (scheme, credentials, or not a public address)"}},
)
async def put_webhook(body: WebhookUpdate, tenant: TenantDep) -> WebhookSettings:
    if body.url is not None:
        try:
            tenant.webhook_policy.check_url(body.url)
        except TargetRefused as exc:
            raise HTTPProblem(422, "Unprocessable Content", str(exc)) from None
    cfg = await webhook_config.load(tenant.storage) or WebhookConfig()
    overlap = timedelta(seconds=tenant.settings.webhook_secret_overlap_seconds)
    url = body.url if "url" in body.model_fields_set else cfg.url  # a rotation alone keeps the URL
    cfg = cfg.updated(url, body.rotate_secret, utcnow(), overlap)
    await webhook_config.save(tenant.storage, cfg)
    return _view(cfg)


@router.delete(
    "",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove the webhook and its secrets (events not yet delivered are dropped)",
    responses=NONE,
)
async def delete_webhook(tenant: TenantDep) -> None:
    await _existing(tenant)
    await webhook_config.remove(tenant.storage)
