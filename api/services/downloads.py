"""How a sealed output reaches its consumer: streamed through the API, or, when the operator exposes the object
store and the output is large, a 307 to a presigned URL of that one object, valid minutes, so its bytes go at the
speed of S3 and not through the API process (which shares the node's cores with the store and the client)."""

from __future__ import annotations

from fastapi import Response

from api.services.tenant import TenantContext


def presigned_download(tenant: TenantContext, key: str, size: int, filename: str) -> Response | None:
    """A 307 to a presigned GET of the sealed output ``key`` (None: stream it). The sealed object is the API's own
    (only its credentials write ``outputs/``), so its bytes are those the receipt's sha256 names; the URL can read
    that object alone, until it expires, and nothing else."""
    settings = tenant.settings
    if size < settings.presign_min_bytes:
        return None
    url = tenant.storage.presigned(key, settings.presign_seconds, filename)
    if url is None:
        return None
    return Response(status_code=307, headers={"Location": url, "Cache-Control": "no-store"})
