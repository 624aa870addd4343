"""The tenant API's live token set: new tokens work at once, revoked ones stop within the refresh period,
bad tokens cannot make it hammer the Kubernetes API, an outage keeps the last set. Time is injected."""

from __future__ import annotations

import asyncio
import hashlib

from api.core.tokens import LiveTokens
from api.web.auth import MISS_INTERVAL, TokenSet


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Source:
    """What the Secret holds, and how often it was read."""

    def __init__(self, *tokens: str) -> None:
        self.digests = tuple(digest(t) for t in tokens)
        self.reads = 0
        self.down = False

    async def read(self) -> LiveTokens | None:
        self.reads += 1
        if self.down:
            raise ConnectionError("kube down")
        return LiveTokens(self.digests)


def test_new_revoked_rate_limited_and_outage() -> None:
    now = [100.0]
    source = Source("a")
    tokens = TokenSet((digest("a"),), refresh_seconds=2.0, reader=source.read, clock=lambda: now[0])

    async def run() -> None:
        assert await tokens.problem("Bearer a") is None and source.reads == 0  # fresh seed: no read
        source.digests = (digest("a"), digest("b"))  # the provisioner added a grant
        now[0] += MISS_INTERVAL
        assert await tokens.problem("Bearer b") is None and source.reads == 1  # one miss, one read: accepted
        # wrong tokens: at most one read per MISS_INTERVAL, however many arrive
        for _ in range(50):
            assert await tokens.problem("Bearer nope") == "invalid token"
        assert source.reads == 1
        now[0] += MISS_INTERVAL
        assert await tokens.problem("Bearer nope") == "invalid token" and source.reads == 2
        # revoked: still accepted while the set is fresh, refused once it is older than the refresh period
        source.digests = (digest("b"),)
        assert await tokens.problem("Bearer a") is None
        now[0] += 2.0
        assert await tokens.problem("Bearer a") == "invalid token"
        assert await tokens.problem("Bearer b") is None
        # the Kubernetes API down: the last set stays in force
        source.down = True
        now[0] += 5.0
        assert await tokens.problem("Bearer b") is None
        assert await tokens.problem("Basic b") == "missing bearer token"

    asyncio.run(run())


def test_each_token_covers_its_own_assets_once_the_set_is_read() -> None:
    now = [100.0]
    source = Source("a", "b")
    tokens = TokenSet((digest("a"),), refresh_seconds=2.0, reader=source.read, clock=lambda: now[0])

    async def run() -> None:
        assert tokens.assets_of("Bearer a") is None  # the seed names no scopes: every asset
        now[0] += MISS_INTERVAL
        scoped = {digest("a"): frozenset({"dummy"}), digest("b"): frozenset({"input-dummy"})}

        async def read() -> LiveTokens:
            return LiveTokens(source.digests, scoped)

        tokens.reader = read
        assert await tokens.problem("Bearer b") is None  # an unknown token: the set is read again, scopes too
        assert tokens.assets_of("Bearer a") == {"dummy"}
        assert tokens.assets_of("Bearer b") == {"input-dummy"}
        assert tokens.assets_of("Bearer unknown") == frozenset()  # named by no scope: no asset

    asyncio.run(run())


def test_a_new_pod_knows_the_scopes_from_its_environment() -> None:
    """The provisioner hands the scopes to a new pod with the digests: its first request asks Kubernetes nothing."""
    tokens = TokenSet((digest("a"),), refresh_seconds=2.0, seed_scopes={digest("a"): frozenset({"dummy"})})
    assert asyncio.run(tokens.problem("Bearer a")) is None
    assert tokens.assets_of("Bearer a") == {"dummy"}
