"""Each job's own S3 keys, from MinIO's STS: AssumeRole as the tenant's executor user with a session policy (the
job's keys only) and a revoke type (the job's id), and the admin ``revoke-tokens`` call that ends them early.

Why STS and not a MinIO service account per job: one AssumeRole costs ~2 ms on MinIO, a service account ~160 ms
of Argon2 work (measured side by side on this stack's MinIO), and the keys of a revoke type end together on one
call. minio-py's ``AssumeRoleProvider`` cannot send ``TokenRevokeType`` and has no ``revoke-tokens``: both requests
are signed here with minio-py's own SigV4 signer and sent with httpx.

What the keys are worth: the session policy is intersected with the executor user's own policy (job inputs read,
``exec/`` written, no delete), so a key can never do more than that user; it expires on its own (MinIO's
shortest is 15 minutes) and is revoked when the job ends (api.services.finishing).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
from minio.credentials.credentials import Credentials
from minio.credentials.providers import _parse_credentials  # the one parser of STS answers minio-py has
from minio.helpers import sha256_hash
from minio.signer import sign_v4_s3, sign_v4_sts
from minio.time import to_amz_date, utcnow
from pydantic import BaseModel, SecretStr

from api.core.errors import StorageUnavailable, StsRefused

MIN_SECONDS = 900  # MinIO refuses shorter STS sessions
MAX_SECONDS = 7 * 24 * 3600


class JobCredentials(BaseModel):
    access_key: str
    secret_key: SecretStr
    session_token: SecretStr


class MinioSts:
    def __init__(
        self,
        endpoint_url: str,
        access_key: str,
        secret_key: str,
        region: str | None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = urlsplit(endpoint_url.rstrip("/") + "/")
        self.access_key, self.secret_key = access_key, secret_key
        self.user = access_key
        self.region = region or "us-east-1"
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=5.0), transport=transport)

    async def aclose(self) -> None:
        await self.http.aclose()

    @property
    def credentials(self) -> Credentials:
        if not (self.access_key and self.secret_key):
            raise StsRefused("this API has no executor keys to mint a job's own from (WML_API_EXEC_S3_*)")
        return Credentials(self.access_key, self.secret_key)

    async def _send(self, method: str, url: str, headers: dict[str, str], body: bytes | None) -> httpx.Response:
        try:
            response = await self.http.request(method, url, headers=headers, content=body)
        except httpx.HTTPError as exc:
            raise StorageUnavailable(f"S3 STS is unreachable: {type(exc).__name__}") from exc
        if response.status_code >= 500 or response.status_code == 429:
            raise StorageUnavailable(f"S3 STS answered {response.status_code}")
        return response

    async def assume(self, policy: dict[str, Any], seconds: int, revoke_type: str) -> JobCredentials:
        """Keys limited to ``policy`` for ``seconds`` (clamped to what MinIO allows), revocable by ``revoke_type``."""
        query = {
            "Action": "AssumeRole",
            "Version": "2011-06-15",
            "DurationSeconds": str(max(MIN_SECONDS, min(MAX_SECONDS, seconds))),
            "Policy": json.dumps(policy, separators=(",", ":")),
            "TokenRevokeType": revoke_type,
        }
        body = urlencode(query)
        date = utcnow()
        unsigned: dict[str, str | list[str] | tuple[str]] = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Host": self.url.netloc,
            "X-Amz-Date": to_amz_date(date),
        }
        headers = sign_v4_sts(
            method="POST",
            url=self.url,
            region=self.region,
            headers=unsigned,
            credentials=self.credentials,
            content_sha256=sha256_hash(body),
            date=date,
        )
        response = await self._send("POST", self.url.geturl(), _flat(headers), body.encode())
        if not response.is_success:
            raise StsRefused(f"AssumeRole: {response.status_code} {_code(response.text)}")
        creds = _parse_credentials(response.text, "AssumeRoleResult")
        return JobCredentials(
            access_key=creds.access_key,
            secret_key=SecretStr(creds.secret_key),
            session_token=SecretStr(creds.session_token or ""),
        )

    async def revoke(self, revoke_type: str) -> None:
        """End every key minted with ``revoke_type`` now (no error when there is none)."""
        params = urlencode(sorted({"user": self.user, "tokenRevokeType": revoke_type}.items()))
        url = urlsplit(f"{self.url.scheme}://{self.url.netloc}/minio/admin/v3/revoke-tokens/builtin?{params}")
        date = utcnow()
        digest = sha256_hash(None)
        unsigned: dict[str, str | list[str] | tuple[str]] = {
            "Host": url.netloc,
            "x-amz-date": to_amz_date(date),
            "x-amz-content-sha256": digest,
        }
        headers = sign_v4_s3(
            method="POST",
            url=url,
            region=self.region,
            headers=unsigned,
            credentials=self.credentials,
            content_sha256=digest,
            date=date,
        )
        response = await self._send("POST", url.geturl(), _flat(headers), None)
        if not response.is_success:
            raise StsRefused(f"revoke-tokens: {response.status_code} {_code(response.text)}")


def _flat(headers: dict[str, str | list[str] | tuple[str]]) -> dict[str, str]:
    return {k: v if isinstance(v, str) else ",".join(v) for k, v in headers.items()}


def _code(text: str) -> str:
    """MinIO's error code, never the request (it carries no secret, but the answer may echo parameters)."""
    start = text.find("<Code>")
    end = text.find("</Code>")
    if 0 <= start < end:
        return text[start + 6 : end][:80]
    try:
        return str(json.loads(text).get("Code", ""))[:80]
    except ValueError:
        return ""
