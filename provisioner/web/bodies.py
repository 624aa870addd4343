"""Request bodies for the OpenAPI document: the protocol routes read their JSON themselves (to refuse in their
protocol's error shape), so FastAPI cannot see the models they validate against; this declares them, inlined (no
``$defs`` references that would point outside the operation), for operators' docs and the schema-driven fuzzing.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inline(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


def json_body(model: type[BaseModel], required: bool = True) -> dict[str, Any]:
    """``openapi_extra`` declaring ``model`` as the operation's JSON body."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})
    content = {"application/json": {"schema": _inline(schema, defs)}}
    return {"requestBody": {"required": required, "content": content}}
