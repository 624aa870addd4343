"""The live token set as the provisioner publishes it (Secret ``wml-api-tokens``): each active grant's token digest,
and the assets each one's contract covers."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class LiveTokens:
    """``scopes`` maps a digest to the asset names its grant covers; None when the Secret names no scopes (a
    provisioner from before scopes): every token then covers every asset."""

    digests: tuple[str, ...]
    scopes: Mapping[str, frozenset[str]] | None = None


def parse_scopes(text: str) -> Mapping[str, frozenset[str]] | None:
    """``{"<digest>": ["<asset>", ...]}`` as the provisioner writes it; None for no text (no scopes named). Text that
    is no such object covers nothing, rather than everything."""
    if not text:
        return None
    try:
        parsed = json.loads(text)
        return {str(d).lower(): frozenset(str(a) for a in assets) for d, assets in dict(parsed).items()}
    except (ValueError, TypeError):
        return {}
