"""Just enough S3 (AWS Signature V4, stdlib only) to create the stack's bucket in MinIO and read
objects back in tests."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import urllib.error
import urllib.parse
import urllib.request

REGION = "us-east-1"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def _sign(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def request(method: str, url: str, access_key: str, secret_key: str) -> tuple[int, bytes]:
    """Send a signed request without a body; return the HTTP status and the response body."""
    parsed = urllib.parse.urlsplit(url)
    now = dt.datetime.now(dt.UTC)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    headers = {"host": parsed.netloc, "x-amz-content-sha256": EMPTY_SHA256, "x-amz-date": amz_date}
    signed = ";".join(sorted(headers))
    canonical = "\n".join(
        [
            method,
            urllib.parse.quote(parsed.path or "/"),
            parsed.query,
            "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)),
            signed,
            EMPTY_SHA256,
        ]
    )
    scope = f"{day}/{REGION}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = _sign(_sign(_sign(_sign(f"AWS4{secret_key}".encode(), day), REGION), "s3"), "aws4_request")
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={signed}, Signature={signature}"
    )
    req = urllib.request.Request(url, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # local MinIO only
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def ensure_bucket(endpoint: str, bucket: str, access_key: str, secret_key: str) -> None:
    url = f"{endpoint}/{bucket}"
    if request("HEAD", url, access_key, secret_key)[0] == 200:
        return
    status, _ = request("PUT", url, access_key, secret_key)
    if status not in (200, 409):
        raise RuntimeError(f"creating bucket {bucket} at {endpoint} failed with HTTP {status}")


def get_object(endpoint: str, bucket: str, key: str, access_key: str, secret_key: str) -> bytes:
    status, body = request("GET", f"{endpoint}/{bucket}/{key}", access_key, secret_key)
    if status != 200:
        raise FileNotFoundError(f"s3://{bucket}/{key}: HTTP {status}: {body[:200]!r}")
    return body
