"""Wire shapes of EDC's control-plane HTTP provisioner (``provision-http``, EDC <= 0.15): the request it
sends and the two callbacks we send back. The one owner of the HTTP provisioner's JSON."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator


class RequestType(StrEnum):
    PROVISION = "provision"
    DEPROVISION = "deprovision"


class ProvisionRequest(BaseModel):
    """EDC's ``HttpProvisionerRequest`` (v0.11 to v0.15; older connectors send no ``type``)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    asset_id: str = Field(alias="assetId", min_length=1, max_length=256)
    transfer_process_id: str = Field(alias="transferProcessId", min_length=1, max_length=256)
    resource_definition_id: str = Field(alias="resourceDefinitionId", min_length=1, max_length=256)
    callback_address: AnyHttpUrl = Field(alias="callbackAddress")
    policy: dict[str, Any] | None = Field(default=None, description="Opaque; read for assignee and end date.")
    type: RequestType | None = Field(
        default=None, description="Absent before EDC 0.11: provision, or deprovision when EDC says the transfer ends."
    )

    @field_validator("type", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @property
    def kind(self) -> RequestType:
        return self.type or RequestType.PROVISION

    @property
    def callback_base(self) -> str:
        return str(self.callback_address).rstrip("/")


# EDC reads HttpData properties under its vocabulary's IRIs (``HttpDataAddressSchema.BASE_URL`` is
# ``<ns>baseUrl``); a plain ``baseUrl`` reaches the data plane but is not found there.
EDC_NAMESPACE = "https://w3id.org/edc/v0.0.1/ns/"


class ContentDataAddress(BaseModel):
    properties: dict[str, str]

    @classmethod
    def http_data(cls, **properties: str) -> ContentDataAddress:
        """An ``HttpData`` address with its properties under EDC's namespace."""
        return cls(properties={EDC_NAMESPACE + k: v for k, v in {"type": "HttpData", **properties}.items()})

    def get(self, name: str) -> str:
        """A property by its short name (``baseUrl``), whether or not the sender used EDC's namespace."""
        return self.properties.get(EDC_NAMESPACE + name, self.properties.get(name, ""))


class ProvisionCallback(BaseModel):
    """Body of ``POST {callbackAddress}/{transferProcessId}/provision``."""

    edctype: Literal["dataspaceconnector:provisioner-callback-request"] = (
        "dataspaceconnector:provisioner-callback-request"
    )
    resource_definition_id: str = Field(serialization_alias="resourceDefinitionId")
    asset_id: str = Field(serialization_alias="assetId")
    resource_name: str = Field(serialization_alias="resourceName")
    content_data_address: ContentDataAddress = Field(serialization_alias="contentDataAddress")
    api_key_jwt: str = Field(serialization_alias="apiKeyJwt", min_length=1)
    has_token: bool = Field(default=True, serialization_alias="hasToken")

    def wire(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True)


class DeprovisionCallback(BaseModel):
    """Body of ``POST {callbackAddress}/{transferProcessId}/deprovision``."""

    provisioned_resource_id: str = Field(serialization_alias="provisionedResourceId")
    in_process: bool = Field(default=False, serialization_alias="inProcess")
    error: bool = False
    error_message: str | None = Field(default=None, serialization_alias="errorMessage")

    def wire(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True)
