"""Wire shapes of the Eclipse Data Plane Signaling API (DPS; plain JSON; EDC >= 0.18).

Spec releases v1.0-RC2 (EDC 0.18) and v1.0-RC3 (EDC main) differ in the start message: RC2 names the transfer
``transferType`` and may carry ``callbackAddress``; RC3 names it ``profile`` and has no callback address (the
control plane's registered endpoint is where callbacks go). Both are read here. DataAddresses are written in
DSP 2025-1 form (``@type: DataAddress``, ``EndpointProperty`` items), which the spec's schemas require.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

HTTP_ENDPOINT_TYPE = "https://w3id.org/idsa/v4.1/HTTP"
RC3_HTTP_PULL = "https://w3id.org/dspace-sig/profile/http-pull"
RC3_PROFILES = "https://w3id.org/dspace-sig/profile/"


def endpoint_type(profile: str) -> str:
    """RC3's HTTP profile names the DataAddress by the profile; RC2 uses DSP's HTTP endpoint type."""
    return profile if profile.startswith(RC3_PROFILES) else HTTP_ENDPOINT_TYPE


class FlowState(StrEnum):
    STARTING = "STARTING"
    STARTED = "STARTED"
    SUSPENDED = "SUSPENDED"
    COMPLETED = "COMPLETED"
    TERMINATED = "TERMINATED"


class StartMessage(BaseModel):
    """``DataFlowStartMessage`` (RC2 or RC3). ``counterPartyId`` is the consumer: ``participantId`` is the
    sender, the provider itself in EDC 0.18."""

    model_config = ConfigDict(extra="ignore")

    message_id: str = Field(alias="messageId", min_length=1, max_length=256)
    participant_id: str = Field(alias="participantId", min_length=1, max_length=512)
    counter_party_id: str = Field(alias="counterPartyId", min_length=1, max_length=512)
    dataspace_context: str = Field(default="", alias="dataspaceContext", max_length=512)
    process_id: str = Field(alias="processId", min_length=1, max_length=256, pattern=r"^[^\x00-\x1f]+$")
    agreement_id: str = Field(alias="agreementId", min_length=1, max_length=512)
    dataset_id: str = Field(alias="datasetId", min_length=1, max_length=256)
    transfer_type: str | None = Field(default=None, alias="transferType", max_length=512)
    profile: str | None = Field(default=None, max_length=512)
    callback_address: str | None = Field(default=None, alias="callbackAddress", max_length=2048)
    claims: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    labels: list[str] = Field(default_factory=list)
    data_address: dict[str, Any] | None = Field(default=None, alias="dataAddress")

    @model_validator(mode="after")
    def _one_kind(self) -> StartMessage:
        if not (self.transfer_type or self.profile):
            raise ValueError("transferType (RC2) or profile (RC3) is required")
        return self

    @property
    def kind(self) -> str:
        return self.profile or self.transfer_type or ""


class FlowMessage(BaseModel):
    """Suspend, resume, terminate (``messageId`` and an optional ``reason``)."""

    model_config = ConfigDict(extra="ignore")

    message_id: str = Field(default="", alias="messageId", max_length=256)
    reason: str | None = Field(default=None, max_length=2048)


def data_address(endpoint: str, token: str, endpoint_type: str = HTTP_ENDPOINT_TYPE) -> dict[str, Any]:
    return {
        "@type": "DataAddress",
        "endpointType": endpoint_type,
        "endpoint": endpoint,
        "endpointProperties": [
            {"@type": "EndpointProperty", "name": "authorization", "value": token},
            {"@type": "EndpointProperty", "name": "authType", "value": "bearer"},
        ],
    }


def status(
    message_id: str,
    flow_id: str,
    state: FlowState,
    address: dict[str, Any] | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    """``DataFlowStatusMessage``: our answer to start/resume, and the body of our callbacks."""
    body: dict[str, Any] = {"messageId": message_id, "dataFlowId": flow_id, "state": state}
    if address is not None:
        body["dataAddress"] = address
    if error:
        body["error"] = error
    return body


def status_response(flow_id: str, state: FlowState) -> dict[str, Any]:
    return {"dataFlowId": flow_id, "state": state}


def registration(
    dataplane_id: str, endpoint: str, profiles: list[str], authorization: dict[str, Any] | None
) -> dict[str, Any]:
    """``DataPlaneRegistrationMessage``; ``transferTypes`` too, which EDC (main, 0.18) still reads."""
    body: dict[str, Any] = {
        "dataplaneId": dataplane_id,
        "endpoint": endpoint,
        "profiles": profiles,
        "transferTypes": profiles,
        "labels": [],
    }
    if authorization is not None:
        body["authorization"] = authorization
    return body


def error(message: str, details: Any = None) -> dict[str, Any]:
    """Error body (the spec fixes only the 4xx status; this shape carries the reason)."""
    body: dict[str, Any] = {"error": message}
    if details is not None:
        body["details"] = details
    return body
