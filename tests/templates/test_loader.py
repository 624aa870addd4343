from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from templates import AssetError, load_directory, load_file, parse_document, parse_text
from templates.asset import InputKind
from tests.support.examples import EXAMPLES


def _dummy() -> dict:
    return yaml.safe_load((EXAMPLES / "dummy.yaml").read_text())


def _problems(doc: object) -> list[tuple[str, str]]:
    with pytest.raises(AssetError) as info:
        parse_document(doc, "asset.yaml")
    assert all(p.source == "asset.yaml" for p in info.value.problems)
    return [(p.field, p.reason) for p in info.value.problems]


def test_examples_load() -> None:
    dummy = load_file(EXAMPLES / "dummy.yaml")
    assert dummy.name == "dummy"
    assert dummy.input("env").kind is InputKind.ENV
    assert dummy.output("result").path == "/output/result"
    assert set(load_directory(EXAMPLES)) == {"dummy", "input-dummy"}


def test_unknown_field_is_named() -> None:
    doc = _dummy()
    doc["worker"]["imag"] = "x"
    assert ("worker.imag", "unknown field") in _problems(doc)


def test_missing_field_is_named() -> None:
    doc = _dummy()
    del doc["worker"]["image"]
    assert ("worker.image", "Field required") in _problems(doc)


@pytest.mark.parametrize("name", ["../etc", "a/b", "/abs", "..", ".", "a\x00b", "", "x" * 200, "-", " "])
def test_unsafe_names_are_rejected(name: str) -> None:
    doc = _dummy()
    doc["inputs"][0]["name"] = name
    fields = [f for f, _ in _problems(doc)]
    assert fields and all(f.startswith("inputs[0]") or f == "" for f in fields)


@pytest.mark.parametrize("name", ["input.zip", "input_testfile", "entrypoint.sh", "A-1"])
def test_seed_names_are_valid(name: str) -> None:
    doc = _dummy()
    doc["outputs"][0]["name"] = name
    assert parse_document(doc).outputs[0].name == name


def test_duplicate_names_and_paths() -> None:
    doc = _dummy()
    doc["outputs"].append(dict(doc["outputs"][0]))
    reasons = " ".join(r for _, r in _problems(doc))
    assert "repeated: result" in reasons
    doc = _dummy()
    doc["outputs"].append({"name": "other", "path": "/output/result"})
    assert any("same path" in r for _, r in _problems(doc))


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("cpu", "-1", "must not be negative"),
        ("cpu", "lots", "not a Kubernetes quantity"),
        ("memory", "0", "greater than zero"),
    ],
)
def test_bad_quantities(field: str, value: str, reason: str) -> None:
    doc = _dummy()
    doc["resources"][field] = value
    assert any(reason in r for _, r in _problems(doc))


@pytest.mark.parametrize("path", ["relative/x", "/data/../etc/passwd", "/"])
def test_bad_paths(path: str) -> None:
    doc = yaml.safe_load((EXAMPLES / "input-dummy.yaml").read_text())
    doc["inputs"][2]["path"] = path
    assert any(f.startswith("inputs[2].path") for f, _ in _problems(doc))


def test_output_outside_output_dir() -> None:
    doc = _dummy()
    doc["outputs"][0]["path"] = "/elsewhere/result"
    assert any("not under worker.outputDir" in r for _, r in _problems(doc))


def test_unsafe_env_key_needs_explicit_allow() -> None:
    doc = _dummy()
    doc["inputs"][0]["keys"].append({"name": "LD_PRELOAD"})
    assert any("unsafe" in r for _, r in _problems(doc))
    doc["inputs"][0]["allowUnsafeKeys"] = ["LD_PRELOAD"]
    assert parse_document(doc).inputs[0].allowed_keys[-1] == "LD_PRELOAD"


def test_timeout_forms() -> None:
    doc = _dummy()
    for value, seconds in [(90, 90), ("90s", 90), ("15m", 900), ("1h30m", 5400)]:
        doc["limits"]["timeout"] = value
        assert parse_document(doc).limits.timeout == seconds
    doc["limits"]["timeout"] = "soon"
    assert any(f == "limits.timeout" for f, _ in _problems(doc))


def test_malformed_text_and_non_mapping() -> None:
    with pytest.raises(AssetError, match="not valid YAML/JSON"):
        parse_text("{not json", "a.json")
    with pytest.raises(AssetError, match="must be a mapping"):
        parse_text("- a\n- b\n", "a.yaml")


def test_cli_style_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nworker: {}\n")
    with pytest.raises(AssetError) as info:
        load_file(bad)
    assert str(bad) in str(info.value) and "worker.image" in str(info.value)


# Random documents: the loader answers with validation errors only, never another exception.
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30,
)
_keys = st.sampled_from(
    [
        "name",
        "worker",
        "inputs",
        "outputs",
        "resources",
        "limits",
        "kind",
        "path",
        "image",
        "service_id",
        "workflow_resource",
        "type",
        "resource_name",
        "keys",
        "format",
        "cpu",
        "timeout",
    ]
)
_asset_like = st.recursive(
    st.none() | st.integers(-5, 5) | st.text(max_size=8) | st.sampled_from(["file", "env", "/data", "1Gi"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_keys, children, max_size=6),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_json, _asset_like))
def test_random_documents_only_raise_asset_errors(document: object) -> None:
    try:
        parse_document(document)
    except AssetError as exc:
        assert exc.problems
    with contextlib.suppress(AssetError):
        parse_text(json.dumps(document))
