"""The live token set as the provisioner publishes it (Secret ``wml-api-tokens``): each active grant's token digest,
and the assets each one's contract covers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class LiveTokens:
    """``scopes`` maps a digest to the asset names its grant covers; None when the Secret names no scopes (a
    provisioner from before scopes): every token then covers every asset."""

    digests: tuple[str, ...]
    scopes: Mapping[str, frozenset[str]] | None = None
