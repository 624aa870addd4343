"""Wire shapes of EDC's data plane signaling (JSON-LD; EDC 0.5-0.17, Tractus-X).

What the control plane sends us (``DataFlowStartMessage``, ``DataFlowSuspendMessage``,
``DataFlowTerminateMessage``) is compacted JSON-LD whose keys may be bare (``processId``, under the ``@vocab``),
prefixed (``edc:processId``) or full IRIs. Each message is expanded (:mod:`.jsonld`: only contexts bundled with us,
never fetched) and read by expanded IRIs, after its ``@type`` is checked against the route's; a body without the
EDC context, with a foreign ``@vocab`` or of another type is refused (:class:`NotAMessage`, 400). The asset's
DataAddress arrives in DSP form (``dspace:endpointType`` + ``dspace:endpointProperties``, a single property as an
object, not a list; ``dspace`` is DSP v0.8 up to EDC 0.15, DSP 2025-1 from 0.16: both are read), and our answer's
DataAddress must be in DSP v0.8 form: EDC 0.15 fails the transfer ("Data flow controller throws an exception:
null") when it gets the EDC-vocabulary form.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, Field, ValidationError, field_validator

from provisioner.protocols.signaling import jsonld
from provisioner.protocols.signaling.jsonld import DSPACE as DSPACE
from provisioner.protocols.signaling.jsonld import DSPACE_2025
from provisioner.protocols.signaling.jsonld import EDC as EDC
from provisioner.protocols.signaling.jsonld import NotAMessage as NotAMessage

CONTEXT = {"@vocab": EDC, "dspace": DSPACE}
HTTP_ENDPOINT_TYPE = "https://w3id.org/idsa/v4.1/HTTP"
PULL_TRANSFER_TYPE = "HttpData-PULL"
# The @type each route takes, expanded.
START = EDC + "DataFlowStartMessage"
SUSPEND = EDC + "DataFlowSuspendMessage"
TERMINATE = EDC + "DataFlowTerminateMessage"


def local_name(key: str) -> str:
    return re.split(r"[:/#]", key)[-1]


def local_view(data: Any) -> Any:
    """A JSON-LD document with every key by its local name and ``{"@value": v}`` unwrapped, recursively (for what
    the control plane answers us, e.g. its data plane listing; never for what it asks of us)."""
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
        """From the compacted form, by local names (for a compacted address; messages use :meth:`of_node`)."""
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

    @classmethod
    def of_node(cls, node: dict[str, Any]) -> SourceAddress:
        """From the expanded DataAddress: DSP form (v0.8 or 2025-1), or the EDC-vocabulary form older versions send.
        Property names in the EDC namespace go by their local name (``…/ns/assetId`` is ``assetId``)."""
        props: dict[str, str] = {}
        for entry in jsonld.objects(node, DSPACE + "endpointProperties", DSPACE_2025 + "endpointProperties"):
            if isinstance(entry, dict):
                name = jsonld.scalar(entry, DSPACE + "name", DSPACE_2025 + "name")
                value = jsonld.scalar(entry, DSPACE + "value", DSPACE_2025 + "value")
                if isinstance(name, str) and isinstance(value, str | int | float | bool):
                    props[jsonld.local(name)] = str(value)
        nested = jsonld.scalar(node, EDC + "properties")
        if isinstance(nested, dict):
            props.update({k: str(v) for k, v in nested.items() if isinstance(v, str | int | float | bool)})
        for key, values in node.items():
            name = jsonld.local(key)
            if name not in (key, "endpointProperties", "properties"):
                value = jsonld.one(values)
                if isinstance(value, str):
                    props.setdefault(name, value)
        kind = jsonld.scalar(node, DSPACE + "endpointType", DSPACE_2025 + "endpointType") or props.get("type") or ""
        return cls(type=str(kind), properties=props)


def _refusal(kind: str, exc: ValidationError) -> NotAMessage:
    """A validation error of a message read from its expansion, named by the IRIs it was read from."""
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    problems = []
    for error in errors:
        where = EDC + ".".join(str(part) for part in error["loc"])
        problems.append(f"missing {where}" if error["type"] == "missing" else f"{where}: {error['msg']}")
    return NotAMessage(f"not a {kind}: {'; '.join(problems)}", errors)


def _expand(body: dict[str, Any], expected: str) -> dict[str, Any]:
    """The message's expanded node, of the ``expected`` @type."""
    kind = expected.removeprefix(EDC)
    try:
        node = jsonld.expand(body)
        jsonld.check_type(node, expected)
    except NotAMessage as exc:
        raise NotAMessage(f"not a {kind}: {exc}", exc.details) from None
    return node


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
        """Read from the body's JSON-LD expansion (:class:`NotAMessage` if it is not a start message)."""
        node = _expand(body, START)
        fields: dict[str, Any] = {}
        for field in cls.model_fields.values():
            alias = field.alias or ""
            if alias != "sourceDataAddress" and EDC + alias in node:
                fields[alias] = jsonld.scalar(node, EDC + alias)
        sources = list(jsonld.objects(node, EDC + "sourceDataAddress"))
        if len(sources) > 1 or (sources and (not isinstance(sources[0], dict) or "@value" in sources[0])):
            raise NotAMessage(f"not a DataFlowStartMessage: {EDC}sourceDataAddress is not one DataAddress")
        if sources:
            fields["sourceDataAddress"] = SourceAddress.of_node(sources[0])
        try:
            return cls.model_validate(fields)
        except ValidationError as exc:
            raise _refusal("DataFlowStartMessage", exc) from None


class FlowMessage(BaseModel):
    """Suspend and terminate: only the process matters (EDC 0.15 sends no reason with terminate)."""

    reason: str | None = None

    @classmethod
    def parse(cls, body: dict[str, Any], expected: str) -> FlowMessage:
        """Read from the body's JSON-LD expansion, which must be of the ``expected`` @type (:data:`SUSPEND`,
        :data:`TERMINATE`); :class:`NotAMessage` otherwise, an empty body included (EDC always sends one)."""
        reason = jsonld.scalar(_expand(body, expected), EDC + "reason")
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
