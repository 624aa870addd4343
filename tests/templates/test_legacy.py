from __future__ import annotations

import json

import pytest

from templates import AssetError, load_file, parse_document
from templates.asset import InputKind
from tests.support.examples import EXAMPLES


def test_legacy_input_dummy_keeps_its_meaning() -> None:
    asset = load_file(EXAMPLES / "legacy" / "input-dummy.json")
    assert asset.name == "input-dummy"
    kinds = {i.name: (i.kind, i.path, i.format) for i in asset.inputs}
    assert kinds["env"] == (InputKind.ENV, None, None)
    assert kinds["input.zip"] == (InputKind.ARCHIVE, "/data", "zip")
    assert kinds["input_testfile"] == (InputKind.FILE, "/data/input_testfile", None)
    assert kinds["entrypoint.sh"] == (InputKind.FILE, "/app/entrypoint.sh", None)
    assert asset.output("result").path == "/output/result"
    assert asset.worker.command == ["/bin/sh"] and asset.worker.args == ["entrypoint.sh"]
    assert asset.worker.normalized_image == "docker.io/imlahso/dummy-job:latest"


def test_legacy_type_names_and_gpu() -> None:
    doc = json.loads((EXAMPLES / "legacy" / "dummy.json").read_text())
    doc["inputs"][0]["type"] = "environment"
    doc["workflow_resource"]["gpu"] = True
    asset = parse_document(doc)
    assert asset.inputs[0].kind is InputKind.ENV
    assert asset.resources.gpu is not None and asset.resources.gpu.count == 1


@pytest.mark.parametrize("bad_type", [0, 4, "blob", True, None])
def test_unknown_legacy_type(bad_type: object) -> None:
    doc = json.loads((EXAMPLES / "legacy" / "dummy.json").read_text())
    doc["inputs"][0]["type"] = bad_type
    with pytest.raises(AssetError) as info:
        parse_document(doc, "legacy.json")
    assert info.value.problems[0].field == "inputs[0].type"


def test_legacy_unknown_field_and_traversal() -> None:
    doc = json.loads((EXAMPLES / "legacy" / "dummy.json").read_text())
    doc["workflow_resource"]["extra"] = 1
    with pytest.raises(AssetError, match="unknown field"):
        parse_document(doc)
    doc = json.loads((EXAMPLES / "legacy" / "input-dummy.json").read_text())
    doc["inputs"][1]["resource_name"] = "../../x"
    with pytest.raises(AssetError):
        parse_document(doc)
