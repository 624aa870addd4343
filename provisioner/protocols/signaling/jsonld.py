"""JSON-LD expansion of EDC's data plane signaling messages (dialect A), with no remote context ever loaded.

A message means what its expansion says, not what its keys look like: ``processId``, ``edc:processId`` and
``https://w3id.org/edc/v0.0.1/ns/processId`` are the same property only under a context that maps them there. So
every message is expanded (PyLD) and read by expanded IRIs; a document without ``@context``, or with a foreign
``@vocab``, expands to other IRIs (or to nothing) and is refused, as is a message of another ``@type`` than the
route's.

What EDC sends (read from eclipse-edc/Connector v0.10 … v0.18 and tractusx-edc 0.12 / main, and seen from EDC
0.15.1): the signaling client compacts every message with its ``CONTROL_CLIENT_SCOPE``, whose context is *inline
only*: ``{"odrl": "http://www.w3.org/ns/odrl/2/", "dspace": "https://w3id.org/dspace/v0.8/", "@vocab":
"https://w3id.org/edc/v0.0.1/ns/"}`` (EDC >= 0.16: ``dspace`` is ``https://w3id.org/dspace/2025/1/``). Neither EDC
nor Tractus-X registers a context URL for that scope or the default scope, so no context document needs to be
bundled: :data:`BUNDLED` is empty and any context URL (``"@context": "https://…"``, ``@import``) is refused by
:func:`bundled_only` without a request being made.

The work is bounded before expansion (the body is already capped at ``request_max_bytes``): at most
:data:`MAX_DEPTH` levels of nesting, :data:`MAX_VALUES` JSON values, of which at most :data:`MAX_CONTEXT_VALUES`
in ``@context`` values (a scoped context re-applied to every node costs its size each time: unbounded,
1 MiB of it takes minutes).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from pyld import jsonld
from pyld.context_resolver import ContextResolver

EDC = "https://w3id.org/edc/v0.0.1/ns/"
DSPACE = "https://w3id.org/dspace/v0.8/"
DSPACE_2025 = "https://w3id.org/dspace/2025/1/"

MAX_DEPTH = 32
MAX_VALUES = 4096
MAX_CONTEXT_VALUES = 32

# Context documents served to the expansion, by URL (a document: ``{"@context": …}``). EDC's signaling messages
# carry their context inline, so none is needed; a context EDC starts to reference by URL goes here, read from a
# file in this package, never from the network.
BUNDLED: Mapping[str, Mapping[str, Any]] = {}


class NotAMessage(ValueError):
    """The body is not the message the route takes; ``str()`` says why, ``details`` may say more (400)."""

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.details = details


class ContextRefused(Exception):
    """A context URL that is not bundled: refused without fetching it."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


def bundled_only(contexts: Mapping[str, Mapping[str, Any]] = BUNDLED) -> Any:
    """A PyLD document loader that serves ``contexts`` and refuses every other URL (it never fetches)."""

    def load(url: str, options: Any = None) -> dict[str, Any]:
        document = contexts.get(url)
        if document is None:
            raise ContextRefused(url)
        return {"contentType": "application/ld+json", "contextUrl": None, "documentUrl": url, "document": document}

    return load


def _bounds(document: Any) -> None:
    """Refuse documents too deep or too large to expand cheaply (iterative: a deep document cannot overflow)."""
    values = context_values = 0
    stack: list[tuple[Any, int, bool]] = [(document, 1, False)]
    while stack:
        node, depth, in_context = stack.pop()
        values += 1
        context_values += in_context
        if values > MAX_VALUES:
            raise NotAMessage(f"the document has more than {MAX_VALUES} JSON values")
        if context_values > MAX_CONTEXT_VALUES:
            raise NotAMessage(f"the document's @context values hold more than {MAX_CONTEXT_VALUES} JSON values")
        if isinstance(node, dict | list) and depth > MAX_DEPTH:
            raise NotAMessage(f"the document is nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, dict):
            stack.extend((v, depth + 1, in_context or k == "@context") for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, depth + 1, in_context) for v in node)


def _refused_url(exc: BaseException) -> str | None:
    """The URL our loader refused, if that is what (somewhere down its causes) made PyLD fail."""
    cause: BaseException | None = exc
    for _ in range(16):
        if cause is None:
            break
        if isinstance(cause, ContextRefused):
            return cause.url
        cause = cause.__cause__ or cause.__context__
    return None


def expand(document: dict[str, Any], contexts: Mapping[str, Mapping[str, Any]] = BUNDLED) -> dict[str, Any]:
    """The one node object ``document`` expands to, with only ``contexts`` loadable by URL."""
    _bounds(document)
    loader = bundled_only(contexts)
    # A resolver of its own: nothing another caller of PyLD resolved (with another loader) is served from a cache.
    options = {"base": None, "documentLoader": loader, "contextResolver": ContextResolver({}, loader)}
    try:
        expanded = jsonld.expand(document, options)
    except jsonld.JsonLdError as exc:
        url = _refused_url(exc)
        if url is not None:
            raise NotAMessage(
                f"@context {url!r} is not one this data plane knows (contexts are never fetched)"
            ) from None
        raise NotAMessage(f"not valid JSON-LD: {exc.args[0] if exc.args else exc}", {"code": exc.code}) from None
    except (ValueError, TypeError, KeyError, IndexError, RecursionError) as exc:
        # e.g. a relative context URL (there is no base IRI): PyLD's own words for a ValueError
        detail = str(exc)[:300] if isinstance(exc, ValueError) else type(exc).__name__
        raise NotAMessage(f"not valid JSON-LD: {detail}") from None
    nodes = [n for n in expanded if isinstance(n, dict)] if isinstance(expanded, list) else []
    if not nodes:
        raise NotAMessage(f"the document expands to nothing (empty, or no @context maps its terms to {EDC})")
    if len(nodes) > 1:
        raise NotAMessage(f"the document expands to {len(nodes)} nodes, not one message")
    return nodes[0]


def check_type(node: Mapping[str, Any], expected: str) -> None:
    """``node`` has exactly one ``@type``, ``expected`` (an expanded IRI)."""
    types = node.get("@type") or []
    if types != [expected]:
        got = ", ".join(repr(t) for t in types) if types else "none"
        hint = "" if any(str(t).startswith(EDC) for t in types) else f" (no @context maps it into {EDC}?)"
        raise NotAMessage(f"@type is {got} after JSON-LD expansion, expected {expected!r}{hint}")


def objects(node: Mapping[str, Any], *iris: str) -> Iterator[Any]:
    """The values of the first of ``iris`` that ``node`` has (``@list`` values unwrapped)."""
    for iri in iris:
        if iri in node:
            for value in node[iri]:
                if isinstance(value, dict) and "@list" in value:
                    yield from value["@list"]
                else:
                    yield value
            return


def plain(value: Any) -> Any:
    """A value object's value; a node object as a dict by local names; anything else as it is."""
    if isinstance(value, dict):
        if "@value" in value:
            return value["@value"]
        if "@list" in value:
            return [plain(v) for v in value["@list"]]
        return {local(k): one(v) for k, v in value.items() if not k.startswith("@")}
    return value


def one(values: list[Any]) -> Any:
    """A property's single value, plain; several values as a list (which a scalar field then refuses)."""
    return plain(values[0]) if len(values) == 1 else [plain(v) for v in values]


def scalar(node: Mapping[str, Any], *iris: str) -> Any:
    """The plain value of the first of ``iris`` that ``node`` has, or ``None``."""
    for iri in iris:
        if iri in node:
            return one(node[iri])
    return None


def local(iri: str) -> str:
    """The local name of an IRI in the EDC or a DSP namespace; any other IRI as it is."""
    for namespace in (EDC, DSPACE, DSPACE_2025):
        if iri.startswith(namespace) and len(iri) > len(namespace):
            return iri[len(namespace) :]
    return iri
