"""Standard Webhooks signatures: ``webhook-signature: v1,<base64 HMAC-SHA256(secret, "<id>.<timestamp>.<body>")>``.

Secrets are ``whsec_`` + base64 of 32 random bytes. During a rotation the event carries one signature per live
secret, space-separated, as the standard allows; a receiver accepts the event if any of them verifies.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime

from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def signature_header(keys: Sequence[str], event_id: str, timestamp: int, body: str) -> str:
    at = datetime.fromtimestamp(timestamp, tz=UTC)
    return " ".join(Webhook(key).sign(msg_id=event_id, timestamp=at, data=body) for key in keys)
