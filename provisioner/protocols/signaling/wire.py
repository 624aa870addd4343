"""Wire shapes of EDC's data plane signaling (JSON-LD; EDC 0.5-0.17, Tractus-X).

What the control plane sends us (``DataFlowStartMessage``, ``DataFlowSuspendMessage``,
``DataFlowTerminateMessage``) arrives as compacted JSON-LD whose keys may be bare (``processId``, under the
``@vocab``), prefixed (``edc:processId``) or full IRIs; :func:`local_view` reads them all the same way. The
asset's DataAddress arrives in DSP v0.8 form (``dspace:endpointType`` + ``dspace:endpointProperties``, a
single property as an object, not a list), and our answer's DataAddress must be in that form too: EDC 0.15
fails the transfer ("Data flow controller throws an exception: null") when it gets the EDC-vocabulary form.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, Field, field_validator

EDC = "https://w3id.org/edc/v0.0.1/ns/"
DSPACE = "https://w3id.org/dspace/v0.8/"
CONTEXT = {"@vocab": EDC, "dspace": DSPACE}
HTTP_ENDPOINT_TYPE = "https://w3id.org/idsa/v4.1/HTTP"
PULL_TRANSFER_TYPE = "HttpData-PULL"


def local_name(key: str) -> str:
    return re.split(r"[:/#]", key)[-1]


def local_view(data: Any) -> Any:
    """A JSON-LD document with every key by its local name and ``{"@value": v}`` unwrapped, recursively."""
    if isinstance(data, list):
        return [local_view(v) for v in data]
    if not isinstance(data, dict):
        return data
    if set(data) <= {"@value", "@type", "@language"} and "@value" in data:
        return data["@value"]
    return {(k if k.startswith("@") else local_name(k)): local_view(v) for k, v in data.items() if k != "@context"}


def _one(value: Any) -> Any:
    """JSON-LD compaction turns a one-element list into its element; read both the same way."""
    return value[0] if isinstance(value, list) and len(value) == 1 else value


class SourceAddress(BaseModel):
    """The asset's DataAddress as the control plane forwards it: its type and its properties by local name."""

    type: str = ""
    properties: dict[str, str] = {}

    @classmethod
    def read(cls, raw: Any) -> SourceAddress:
        data = _one(raw)
        if not isinstance(data, dict):
            return cls()
        props: dict[str, str] = {}
        entries = data.get("endpointProperties", [])
        for entry in entries if isinstance(entries, list) else [entries]:
            if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                value = entry.get("value")
                if isinstance(value, str | int | float | bool):
                    props[local_name(entry["name"])] = str(value)
        nested = data.get("properties")
        if isinstance(nested, dict):  # the EDC-vocabulary form some versions send
            props.update({k: str(v) for k, v in nested.items() if isinstance(v, str | int | float | bool)})
        for key, value in data.items():
            if key not in ("endpointProperties", "properties", "@type", "@id") and isinstance(value, str):
                props.setdefault(key, value)
        kind = data.get("endpointType") or props.get("type") or ""
        return cls(type=str(_one(kind)), properties=props)


class StartMessage(BaseModel):
    """``DataFlowStartMessage`` (also sent again, for the same process, after our ``provisioned`` callback)."""

    process_id: str = Field(alias="processId", min_length=1, max_length=256, pattern=r"^[^\x00-\x1f]+$")
    dataset_id: str = Field(alias="datasetId", min_length=1, max_length=256)
    participant_id: str = Field(alias="participantId", min_length=1, max_length=512)
    agreement_id: str = Field(default="", alias="agreementId", max_length=512)
    flow_type: str = Field(default="PULL", alias="flowType")
    transfer_type_destination: str = Field(default="", alias="transferTypeDestination")
    callback_address: str = Field(alias="callbackAddress", min_length=1, max_length=2048)
    source: SourceAddress = Field(default_factory=SourceAddress, alias="sourceDataAddress")
    properties: dict[str, Any] = Field(default_factory=dict)

    @field_validator("source", mode="before")
    @classmethod
    def _source(cls, value: Any) -> SourceAddress:
        return value if isinstance(value, SourceAddress) else SourceAddress.read(value)

    @field_validator(
        "process_id", "dataset_id", "participant_id", "agreement_id", "callback_address", "flow_type", mode="before"
    )
    @classmethod
    def _scalar(cls, value: Any) -> Any:
        return _one(value)

    @classmethod
    def parse(cls, body: dict[str, Any]) -> StartMessage:
        return cls.model_validate(local_view(body))


class FlowMessage(BaseModel):
    """Suspend and terminate: only the process matters (EDC 0.15 sends no reason with terminate)."""

    reason: str | None = None

    @classmethod
    def parse(cls, body: dict[str, Any]) -> FlowMessage:
        view = local_view(body)
        reason = _one(view.get("reason")) if isinstance(view, dict) else None
        return cls(reason=reason if isinstance(reason, str) else None)


def _property(name: str, value: str) -> dict[str, str]:
    return {"@type": "dspace:EndpointProperty", "dspace:name": EDC + name, "dspace:value": value}


def response(endpoint: str | None = None, token: str | None = None) -> dict[str, Any]:
    """``DataFlowResponseMessage``: the endpoint and bearer token, or ``provisioning: true`` (we call back)."""
    body: dict[str, Any] = {"@context": CONTEXT, "@type": "DataFlowResponseMessage"}
    if endpoint is None or token is None:
        body["provisioning"] = True
        return body
    body["provisioning"] = False
    body["dataAddress"] = {
        "@type": "dspace:DataAddress",
        "dspace:endpointType": HTTP_ENDPOINT_TYPE,
        "dspace:endpointProperties": [
            _property("endpoint", endpoint),
            _property("authorization", token),
            _property("authType", "bearer"),
        ],
    }
    return body


def provisioned_address(endpoint: str) -> dict[str, Any]:
    """Body of ``POST {control}/transferprocess/{id}/provisioned``: plain JSON; EDC sends it back to us as the
    next start's ``destinationDataAddress``, so it carries the endpoint, never the token."""
    return {"properties": {EDC + "type": "HttpData", EDC + "endpoint": endpoint}}


def failure(message: str) -> dict[str, Any]:
    """Body of ``POST {control}/transferprocess/{id}/fail`` (``errorMessage`` is required)."""
    return {"errorMessage": message}


def registration(dataplane_id: str, url: str, source_types: list[str]) -> dict[str, Any]:
    """``POST {control}/v1/dataplanes`` (an upsert by ``@id``; plain JSON is refused with 400)."""
    return {
        "@context": {"@vocab": EDC},
        "@id": dataplane_id,
        "url": url,
        "allowedSourceTypes": source_types,
        "allowedTransferTypes": [PULL_TRANSFER_TYPE],
    }


def error(message: str, details: Any = None) -> dict[str, Any]:
    """An error body: EDC logs whatever a data plane answers; it reads only the status (4xx final, 5xx retried)."""
    body: dict[str, Any] = {"@context": {"@vocab": EDC}, "@type": "DataFlowError", "message": message}
    if details is not None:
        body["details"] = details
    return body
