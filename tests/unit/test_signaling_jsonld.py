"""Signaling (dialect A) messages are read as JSON-LD: expanded with PyLD against contexts bundled with us (none is
ever fetched), typed per route, read by expanded IRIs. What EDC 0.15.1 sends keeps working, in any compaction;
a foreign ``@vocab``, no ``@context``, another message's ``@type`` or a context URL are refused with 400.

No stack: the parser directly, and the routes in-process, where every refusal comes before any backend is asked."""

from __future__ import annotations

import copy
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from pyld import jsonld as pyld

from provisioner.app import create_app
from provisioner.infra.settings import ProvisionerSettings
from provisioner.protocols.signaling import jsonld, wire

EDC = "https://w3id.org/edc/v0.0.1/ns/"
DSPACE = "https://w3id.org/dspace/v0.8/"
FIXTURES = sorted((Path(__file__).resolve().parents[1] / "provisioner" / "fixtures" / "signaling").glob("*.json"))
START_FIXTURE = FIXTURES[0].parent / "edc-0.15.1-start.json"
SCALARS = ["processId", "datasetId", "participantId", "agreementId", "flowType", "callbackAddress"]


def fixture(path: Path = START_FIXTURE) -> dict[str, Any]:
    return copy.deepcopy(json.loads(path.read_text()))


def refusal(body: Any, expected: str = wire.START) -> str:
    with pytest.raises(wire.NotAMessage) as caught:
        if expected == wire.START:
            wire.StartMessage.parse(body)
        else:
            wire.FlowMessage.parse(body, expected)
    return str(caught.value)


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing here may load a document: not PyLD's default loader, not a socket."""

    def fetched(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"a document was fetched: {args}")

    monkeypatch.setattr(pyld, "_default_document_loader", fetched)
    monkeypatch.setattr(socket.socket, "connect", fetched)
    monkeypatch.setattr(socket, "create_connection", fetched)


# --- what EDC sends keeps working ---------------------------------------------------------------------------------


def test_there_are_fixtures() -> None:
    assert START_FIXTURE in FIXTURES


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_every_recorded_message_parses_as_before(path: Path) -> None:
    """What the compact-key reading gave for EDC's real messages (bare keys under EDC's @vocab) is what the
    expansion gives."""
    body = fixture(path)
    assert body["@context"]["@vocab"] == EDC and body["@context"]["dspace"] == DSPACE
    message = wire.StartMessage.parse(body)
    by_alias = message.model_dump(by_alias=True)
    for key in SCALARS:
        assert by_alias[key] == body[key], key
    assert message.transfer_type_destination == body["transferTypeDestination"]
    assert message.properties == body["properties"]
    assert message.source.type == body["sourceDataAddress"]["dspace:endpointType"]


def test_the_edc_0_15_1_start_reads_exactly_as_before() -> None:
    """The model the compact-key reading (before JSON-LD) gave for the recorded EDC 0.15.1 start."""
    assert wire.StartMessage.parse(fixture()).model_dump() == {
        "process_id": "c3c55e2f-4714-4157-a255-ffb2efb9364b",
        "dataset_id": "input-dummy",
        "participant_id": "consumer",
        "agreement_id": "f3ce33a8-2d0e-4091-8c4f-1671f0da96a4",
        "flow_type": "PULL",
        "transfer_type_destination": "HttpData",
        "callback_address": "http://127.0.0.1:33661/control",
        "source": {"type": "WorkflowMiddleLayer", "properties": {"endpointType": "WorkflowMiddleLayer"}},
        "properties": {},
    }


def _prefixed(body: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"@context": {**body["@context"], "edc": EDC}}
    for key, value in body.items():
        if not key.startswith("@"):
            out[f"edc:{key}"] = value
        elif key != "@context":
            out[key] = value
    out["@type"] = "edc:DataFlowStartMessage"
    return out


def _full_iris(body: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {k: v for k, v in body.items() if k.startswith("@") and k != "@context"}
    out.update({EDC + k: v for k, v in body.items() if not k.startswith("@")})
    out["@type"] = EDC + "DataFlowStartMessage"
    source = out[EDC + "sourceDataAddress"]
    out[EDC + "sourceDataAddress"] = {
        "@type": DSPACE + "DataAddress",
        DSPACE + "endpointType": source["dspace:endpointType"],
        DSPACE + "endpointProperties": source["dspace:endpointProperties"],
    }
    return out


@pytest.mark.parametrize("compaction", [_prefixed, _full_iris], ids=["edc-prefix", "full-iris"])
def test_prefixed_and_full_iri_keys_read_the_same(compaction: Any) -> None:
    body = fixture()
    assert wire.StartMessage.parse(compaction(body)) == wire.StartMessage.parse(body)


def test_full_iris_need_no_context_but_the_type_must_be_edcs() -> None:
    body = _full_iris(fixture())
    assert "@context" not in body
    assert wire.StartMessage.parse(body).process_id == fixture()["processId"]


def test_the_data_address_in_dsp_v0_8_and_2025_1_form() -> None:
    """A single endpoint property arrives as an object; EDC >= 0.16 binds ``dspace`` to DSP 2025-1. Names in the
    EDC namespace go by their local name, others keep their IRI (a foreign ``…/assetId`` is not ``assetId``)."""
    for dspace in (DSPACE, "https://w3id.org/dspace/2025/1/"):
        body = fixture()
        body["@context"]["dspace"] = dspace
        body["sourceDataAddress"] = {
            "@type": "dspace:DataAddress",
            "dspace:endpointType": "WorkflowMiddleLayer",
            "dspace:endpointProperties": {
                "@type": "dspace:EndpointProperty",
                "dspace:name": EDC + "assetId",
                "dspace:value": "asset-1",
            },
        }
        assert wire.StartMessage.parse(body).source.properties["assetId"] == "asset-1"
        body["sourceDataAddress"]["dspace:endpointProperties"]["dspace:name"] = "https://evil.example/assetId"
        assert "assetId" not in wire.StartMessage.parse(body).source.properties


def test_suspend_and_terminate_as_edc_sends_them() -> None:
    context = fixture()["@context"]
    assert wire.FlowMessage.parse({"@context": context, "@type": "DataFlowTerminateMessage"}, wire.TERMINATE) == (
        wire.FlowMessage(reason=None)
    )
    suspend = {"@context": context, "@type": "DataFlowSuspendMessage", "reason": "paused"}
    assert wire.FlowMessage.parse(suspend, wire.SUSPEND).reason == "paused"


# --- what is refused --------------------------------------------------------------------------------------------


def test_a_foreign_vocab_is_refused() -> None:
    body = fixture()
    body["@context"] = {"@vocab": "https://evil.example/ns/"}
    reason = refusal(body)
    assert "not a DataFlowStartMessage" in reason and "https://evil.example/ns/DataFlowStartMessage" in reason


def test_a_foreign_vocab_with_edcs_type_misses_every_field() -> None:
    body = fixture()
    body["@context"] = {"@vocab": "https://evil.example/ns/"}
    body["@type"] = EDC + "DataFlowStartMessage"
    reason = refusal(body)
    assert f"missing {EDC}processId" in reason and f"missing {EDC}callbackAddress" in reason


def test_no_context_is_refused() -> None:
    body = fixture()
    del body["@context"]
    reason = refusal(body)
    assert "'DataFlowStartMessage'" in reason and EDC + "DataFlowStartMessage" in reason


def test_an_undeclared_edc_prefix_is_not_edcs() -> None:
    """Under EDC's signaling context ``edc:`` is no prefix: ``edc:processId`` is an IRI of scheme ``edc``."""
    body = fixture()
    body["edc:processId"] = body.pop("processId")
    assert f"missing {EDC}processId" in refusal(body)


@pytest.mark.parametrize(
    "kind,route",
    [
        ("DataFlowTerminateMessage", wire.START),
        ("DataFlowSuspendMessage", wire.START),
        ("DataFlowStartMessage", wire.TERMINATE),
        ("DataFlowTerminateMessage", wire.SUSPEND),
        ("DataFlowSuspendMessage", wire.TERMINATE),
    ],
)
def test_another_messages_type_is_refused(kind: str, route: str) -> None:
    body = {**fixture(), "@type": kind}
    reason = refusal(body, route)
    assert f"not a {route.removeprefix(EDC)}" in reason
    assert f"expected {route!r}" in reason and EDC + kind in reason


@pytest.mark.parametrize("types", [None, ["DataFlowStartMessage", "DataFlowTerminateMessage"]])
def test_exactly_one_type(types: Any) -> None:
    body = fixture()
    if types is None:
        del body["@type"]
    else:
        body["@type"] = types
    assert "@type is" in refusal(body)


@pytest.mark.parametrize("route", [wire.SUSPEND, wire.TERMINATE])
def test_flow_messages_need_their_context_and_type(route: str) -> None:
    kind = route.removeprefix(EDC)
    assert "expands to nothing" in refusal({}, route)
    assert "@type is" in refusal({"@type": kind}, route)
    assert "@type is" in refusal({"@context": {"@vocab": "https://evil.example/"}, "@type": kind}, route)


@pytest.mark.parametrize(
    "context",
    [
        "http://127.0.0.1:1/ctx",
        ["http://127.0.0.1:1/ctx", {"@vocab": EDC}],
        {"@vocab": EDC, "@import": "http://127.0.0.1:1/ctx"},
        "https://w3id.org/edc/connector/management/v0.0.1",
        "https://w3id.org/dspace/2024/1/context.json",
        "relative-context.jsonld",
    ],
)
def test_a_context_url_is_refused_without_being_fetched(context: Any) -> None:
    """Nothing listens on 127.0.0.1:1: a fetch would fail with a connection error, and :func:`no_network` would fail
    the test first. The refusal names the URL and comes at once."""
    body = {**fixture(), "@context": context}
    began = time.monotonic()
    reason = refusal(body)
    assert time.monotonic() - began < 1.0
    if "relative" in json.dumps(context):  # no base IRI to resolve it against: refused before any loader
        assert "invalid relative IRI 'relative-context.jsonld'" in reason
    else:
        assert "is not one this data plane knows (contexts are never fetched)" in reason
        assert "127.0.0.1:1" in reason or "w3id.org" in reason


def test_the_loader_serves_only_what_it_is_given() -> None:
    """The mechanism a bundled context would use: a served URL expands, any other is refused."""
    url = "https://example.org/bundled-context"
    served = {url: {"@context": {"@vocab": EDC, "dspace": DSPACE}}}
    body = {**fixture(), "@context": url}
    node = jsonld.expand(body, served)
    assert node["@type"] == [EDC + "DataFlowStartMessage"]
    with pytest.raises(jsonld.ContextRefused):
        jsonld.bundled_only(served)("https://example.org/other", {})
    assert jsonld.BUNDLED == {}  # EDC's signaling messages carry their context inline: nothing is bundled


def test_a_refused_context_is_not_served_from_a_cache() -> None:
    """A context resolved once with a serving loader is not reused when the next expansion may not load it."""
    url = "https://example.org/once"
    body = {**fixture(), "@context": url}
    jsonld.expand(body, {url: {"@context": {"@vocab": EDC, "dspace": DSPACE}}})
    assert "never fetched" in refusal(body)


# --- bounded work ---------------------------------------------------------------------------------------------------


def _nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = {"a": value}
    return value


def test_a_deep_document_is_refused_before_expansion() -> None:
    deep = {**fixture(), "properties": _nested(jsonld.MAX_DEPTH)}
    assert "nested deeper than 32" in refusal(deep)
    assert wire.StartMessage.parse({**fixture(), "properties": _nested(jsonld.MAX_DEPTH - 3)})


def test_a_very_deep_document_fails_cleanly() -> None:
    body = {**fixture(), "properties": _nested(50_000)}
    assert "nested deeper" in refusal(body)


def test_too_many_values_are_refused() -> None:
    body = {**fixture(), "properties": {f"k{i}": "v" for i in range(jsonld.MAX_VALUES)}}
    assert f"more than {jsonld.MAX_VALUES} JSON values" in refusal(body)


def test_a_large_context_is_refused() -> None:
    """A scoped context re-applied to every node costs its size each time: contexts are kept small."""
    scoped = {f"t{i}": f"https://example.org/{i}" for i in range(jsonld.MAX_CONTEXT_VALUES)}
    body = fixture()
    body["@context"] = {**body["@context"], "T": {"@id": "https://example.org/T", "@context": scoped}}
    assert "@context values hold more than" in refusal(body)


def test_a_hostile_but_bounded_document_expands_quickly() -> None:
    scoped = {f"t{i}": f"https://example.org/{i}" for i in range(20)}
    body = fixture()
    body["@context"] = {**body["@context"], "T": {"@id": "https://example.org/T", "@context": scoped}}
    body["properties"] = [{"@type": "T"}] * ((jsonld.MAX_VALUES - 100) // 3)
    began = time.monotonic()
    wire.StartMessage.parse(body)
    assert time.monotonic() - began < 2.0


# --- the routes answer 400 DataFlowError ----------------------------------------------------------------------------

KEY = "k" * 32
KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:9"}}]
users: [{name: u, user: {token: x}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"""


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    kubeconfig = tmp_path_factory.mktemp("kube") / "config"
    kubeconfig.write_text(KUBECONFIG)
    settings = ProvisionerSettings(
        database_url="sqlite://",
        kubeconfig=Path(kubeconfig),
        reconciler_enabled=False,
        signaling_enabled=True,
        signaling_inbound_key=SecretStr(KEY),
    )
    with TestClient(create_app(settings)) as c:
        yield c


BASE = f"/signaling/{KEY}/dataflows"


def _post(client: TestClient, path: str, body: Any) -> Any:
    return client.post(f"{BASE}{path}", content=json.dumps(body).encode(), headers={"content-type": "application/json"})


def _foreign_vocab() -> dict[str, Any]:
    return {**fixture(), "@context": {"@vocab": "https://evil.example/ns/"}}


def _no_context() -> dict[str, Any]:
    return {k: v for k, v in fixture().items() if k != "@context"}


def _terminate_typed() -> dict[str, Any]:
    return {**fixture(), "@type": "DataFlowTerminateMessage"}


def _context_url() -> dict[str, Any]:
    return {**fixture(), "@context": "http://127.0.0.1:1/ctx"}


@pytest.mark.parametrize("make", [_foreign_vocab, _no_context, _terminate_typed, _context_url])
def test_start_refuses_with_400_data_flow_error(client: TestClient, make: Any) -> None:
    answer = _post(client, "/start", make())
    assert answer.status_code == 400, answer.text
    assert answer.json()["@type"] == "DataFlowError"
    assert answer.json()["message"].startswith("not a DataFlowStartMessage: ")


def test_start_reads_edcs_message(client: TestClient) -> None:
    """EDC's recorded start gets past reading: here it meets the next check (no control plane is configured)."""
    answer = _post(client, "/start", fixture())
    assert answer.status_code == 403 and "callbackAddress" in answer.json()["message"], answer.text


def test_missing_fields_are_named(client: TestClient) -> None:
    body = {k: v for k, v in fixture().items() if k != "processId"}
    answer = _post(client, "/start", body).json()
    assert answer["message"] == f"not a DataFlowStartMessage: missing {EDC}processId"
    assert answer["details"][0]["loc"] == ["processId"]


@pytest.mark.parametrize("route", ["suspend", "terminate"])
@pytest.mark.parametrize(
    "body",
    [{}, {"@type": "DataFlowTerminateMessage"}, {"@type": "DataFlowSuspendMessage"}, None],
    ids=["empty", "terminate-no-context", "suspend-no-context", "start"],
)
def test_suspend_and_terminate_refuse_what_is_not_their_message(client: TestClient, route: str, body: Any) -> None:
    body = body if body is not None else fixture()
    answer = _post(client, f"/some-process/{route}", body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["@type"] == "DataFlowError"
    assert answer.json()["message"].startswith(f"not a DataFlow{route.capitalize()}Message: ")
