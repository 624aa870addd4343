"""A small synchronous client of the consumer API (used by the CLI, the demo and the tests).

Outages are retried, as the API asks (503 + Retry-After) and when no connection could be made (a restarting API
pod, an ingress without endpoints for a moment): reads, uploads (PUT replaces), deletes and cancels always; a job
start only with an ``Idempotency-Key`` that reaches the API (the client makes one when none is given), so a
retried start never runs a second job. ``transport`` and ``sleep`` are test seams.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx

Progress = Callable[[int], None]
Body = bytes | Callable[[], Iterator[bytes]] | None  # a callable makes the stream anew for each attempt
FINISHED = {"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED"}
CHUNK = 1024 * 1024
RETRYABLE_STATUS = frozenset({502, 503, 504})
# Nothing reached the server: safe to repeat whatever the request was.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# The request may have been processed: repeated only when repeating it is harmless.
MAYBE_SENT = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError, httpx.ReadTimeout)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 8
    base_seconds: float = 0.5
    cap_seconds: float = 15.0

    def delay(self, attempt: int, retry_after: str | None) -> float:
        """Seconds before attempt ``attempt + 1``: the server's Retry-After (capped) or exponential backoff."""
        if retry_after:
            with contextlib.suppress(ValueError):
                return min(max(float(retry_after), 0.0), self.cap_seconds)
        return float(min(self.base_seconds * 2.0 ** (attempt - 1), self.cap_seconds))


class ClientError(RuntimeError):
    """The consumer API answered a request with an error: ``status`` and the problem document's ``detail``."""

    def __init__(self, response: httpx.Response) -> None:
        self.status = response.status_code
        try:
            body = response.json()
            detail = body.get("detail", body) if isinstance(body, dict) else body
        except ValueError:
            detail = response.text
        super().__init__(f"{response.status_code}: {detail}")


# The client's error before it was named ClientError: consumers' code may still catch it by that name.
ApiError = ClientError


REDIRECTS = frozenset({302, 303, 307})


def _range_only(headers: Any) -> dict[str, str]:
    """What a followed download keeps of the request's own headers: its Range, nothing else."""
    found = dict(headers or {})
    return {k: v for k, v in found.items() if k.lower() == "range"}


class Client:
    """The consumer API, either directly (``base_url`` and the tenant token from the provision callback) or
    through the provider's EDC data plane (``Client.through_edc`` with the consumer's EDR)."""

    def __init__(
        self,
        base_url: str,
        token: str,
        timeout: float = 60.0,
        scheme: str | None = "Bearer",
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"{scheme} {token}" if scheme else token},
            timeout=httpx.Timeout(timeout, connect=10.0),
            transport=transport,
        )
        # Large downloads may be answered with a presigned object-store URL: followed without our token (the URL is
        # its own authorisation, scoped to one object for a few minutes; the token must never reach another host).
        self.bare = httpx.Client(timeout=httpx.Timeout(timeout, connect=10.0), transport=transport)
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        # EDC's data plane drops Idempotency-Key: through it, a start is never repeated.
        self.keys_reach_api = scheme is not None

    @classmethod
    def through_edc(cls, edr: dict[str, Any], timeout: float = 60.0) -> Client:
        """From an EDR (``GET /v3/edrs/{transfer}/dataaddress`` on the consumer's connector): EDC's data plane
        wants its token as the bare Authorization value, and adds the tenant token itself on the way to us."""
        return cls(edr["endpoint"], edr["authorization"], timeout, scheme=None)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.http.close()
        self.bare.close()

    def _send(self, method: str, url: str, body: Body = None, retry_safe: bool = True, **kwargs: Any) -> httpx.Response:
        attempt = 0
        while True:
            attempt += 1
            last = attempt >= self.retry.attempts
            content = body() if callable(body) else body
            try:
                response = self.http.request(method, url, content=content, **kwargs)
            except NOT_SENT:
                if last:
                    raise
                self.sleep(self.retry.delay(attempt, None))
                continue
            except MAYBE_SENT:
                if last or not retry_safe:
                    raise
                self.sleep(self.retry.delay(attempt, None))
                continue
            if response.status_code in RETRYABLE_STATUS and retry_safe and not last:
                self.sleep(self.retry.delay(attempt, response.headers.get("retry-after")))
                continue
            return response

    @contextlib.contextmanager
    def _stream(self, url: str, **kwargs: Any) -> Iterator[httpx.Response]:
        """A GET whose body is read as it comes; retried until its answer begins (not midway through a body)."""
        attempt, started = 0, False
        while True:
            attempt += 1
            last = attempt >= self.retry.attempts
            try:
                with contextlib.ExitStack() as answers:
                    response = answers.enter_context(self.http.stream("GET", url, **kwargs))
                    if response.status_code in REDIRECTS and "location" in response.headers:
                        # a presigned URL of the object store (large downloads): followed once, without our token
                        location = response.headers["location"]
                        response = answers.enter_context(
                            self.bare.stream("GET", location, headers=_range_only(kwargs.get("headers")))
                        )
                    if response.status_code in RETRYABLE_STATUS and not last:
                        retry_after = response.headers.get("retry-after")
                    else:
                        if response.status_code >= 400:
                            response.read()
                            raise ClientError(response)
                        started = True
                        yield response
                        return
            except (*NOT_SENT, *MAYBE_SENT):
                if last or started:  # a body cut midway is the caller's to handle
                    raise
                retry_after = None
            self.sleep(self.retry.delay(attempt, retry_after))

    def _json(self, method: str, url: str, body: Body = None, retry_safe: bool = True, **kwargs: Any) -> Any:
        response = self._send(method, url, body, retry_safe, **kwargs)
        if response.status_code >= 400:
            raise ClientError(response)
        return response.json() if response.content else None

    def _object(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        """A JSON object answer."""
        return cast(dict[str, Any], self._json(method, url, **kwargs))

    def _items(self, url: str) -> list[dict[str, Any]]:
        """The ``items`` of a JSON list answer."""
        return cast(list[dict[str, Any]], self._json("GET", url)["items"])

    def assets(self) -> list[dict[str, Any]]:
        return self._items("/v1/assets")

    def asset(self, name: str) -> dict[str, Any]:
        return self._object("GET", f"/v1/assets/{name}")

    def upload(self, asset: str, name: str, source: Path, progress: Progress | None = None) -> dict[str, Any]:
        def chunks() -> Iterator[bytes]:
            with source.open("rb") as handle:
                while data := handle.read(CHUNK):
                    if progress:
                        progress(len(data))
                    yield data

        headers = {"Content-Length": str(source.stat().st_size), "Content-Type": "application/octet-stream"}
        return self._object("PUT", f"/v1/assets/{asset}/inputs/{name}", body=chunks, headers=headers)

    def upload_bytes(self, asset: str, name: str, data: bytes) -> dict[str, Any]:
        # a content type also tells EDC's data plane (when calling through it) to forward the body
        headers = {"Content-Type": "application/octet-stream"}
        return self._object("PUT", f"/v1/assets/{asset}/inputs/{name}", body=data, headers=headers)

    def staged(self, asset: str) -> list[dict[str, Any]]:
        return self._items(f"/v1/assets/{asset}/inputs")

    def start(
        self,
        asset: str,
        parameters: dict[str, str] | None = None,
        idempotency_key: str | None = None,
        webhook_url: str | None = None,
    ) -> dict[str, Any]:
        if idempotency_key is None and self.keys_reach_api:
            idempotency_key = uuid.uuid4().hex  # makes the start safe to retry
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        request: dict[str, Any] = {"asset": asset, "parameters": parameters or {}}
        if webhook_url is not None:
            request["webhook_url"] = webhook_url
        safe = bool(idempotency_key) and self.keys_reach_api
        return self._object("POST", "/v1/jobs", json=request, headers=headers, retry_safe=safe)

    def set_webhook(
        self, url: str | None = None, rotate_secret: bool = False, keep_url: bool = False
    ) -> dict[str, Any]:
        """Register the tenant's default webhook (None: per-job URLs only; ``keep_url``: leave it as it is); returns
        it with its signing secret."""
        body: dict[str, Any] = {"rotate_secret": rotate_secret}
        if not keep_url:
            body["url"] = url
        return self._object("PUT", "/v1/webhook", json=body)

    def webhook(self) -> dict[str, Any]:
        return self._object("GET", "/v1/webhook")

    def delete_webhook(self) -> None:
        self._json("DELETE", "/v1/webhook")

    def storage_usage(self) -> dict[str, Any]:
        """What counts against the contract's storage quota (``GET /v1/usage/storage``)."""
        return self._object("GET", "/v1/usage/storage")

    def job(self, job: str) -> dict[str, Any]:
        return self._object("GET", f"/v1/jobs/{job}")

    def jobs(self, **params: Any) -> dict[str, Any]:
        return self._object("GET", "/v1/jobs", params={k: v for k, v in params.items() if v is not None})

    def wait(
        self, job: str, timeout: float = 600, interval: float = 1.0, on_state: Callable[[str], None] | None = None
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            info = self.job(job)
            if on_state:
                on_state(info["state"])
            if info["state"] in FINISHED:
                return info
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job} still {info['state']} after {timeout}s")
            time.sleep(interval)

    def logs(self, job: str, follow: bool = False) -> Iterator[str]:
        params = {"follow": "true" if follow else "false"}
        with self._stream(f"/v1/jobs/{job}/logs", params=params, timeout=None) as response:
            yield from response.iter_lines()

    def cancel(self, job: str) -> dict[str, Any]:
        return self._object("POST", f"/v1/jobs/{job}/cancel")

    def delete(self, job: str) -> None:
        self._json("DELETE", f"/v1/jobs/{job}")

    def outputs(self, job: str) -> list[dict[str, Any]]:
        return self._items(f"/v1/jobs/{job}/outputs")

    def receipt(self, job: str) -> dict[str, Any]:
        return self._object("GET", f"/v1/jobs/{job}/receipt")

    def download(self, job: str, name: str, dest: Path, progress: Callable[[int, int], None] | None = None) -> Path:
        with self._stream(f"/v1/jobs/{job}/outputs/{name}", timeout=None) as response:
            total = int(response.headers.get("content-length", 0))
            tmp = dest.with_name(dest.name + ".part")
            with tmp.open("wb") as handle:
                for data in response.iter_bytes(CHUNK):
                    handle.write(data)
                    if progress:
                        progress(len(data), total)
            tmp.replace(dest)
        return dest
