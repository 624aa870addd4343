from __future__ import annotations

import base64
import copy
import json
import os
from pathlib import Path

import jsonschema
import pytest
import yaml

from templates import compile_asset, load_file
from templates.compiler import ENV_SECRET_NAME, OUTPUT_VOLUME, to_yaml
from templates.jobs import env_secret, job_workflow, new_job_id
from tests.support.examples import EXAMPLE_FILES, EXAMPLES, OPTIONS, TARGET

GOLDEN = Path(__file__).parent / "golden"


def _golden_name(path: Path) -> str:
    return f"{path.parent.name}__{path.stem}.yaml"


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_examples_match_golden_files(path: Path) -> None:
    text = to_yaml(compile_asset(load_file(path), TARGET, OPTIONS).to_dict())
    golden = GOLDEN / _golden_name(path)
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text)
    assert golden.exists(), f"missing golden file {golden}; run with UPDATE_GOLDEN=1"
    assert text == golden.read_text()


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_examples_validate_against_argo_schema(path: Path, argo_schema: dict) -> None:
    manifest = compile_asset(load_file(path), TARGET, OPTIONS).to_dict()
    jsonschema.validate(manifest, argo_schema)


def test_schema_check_rejects_unknown_property(argo_schema: dict) -> None:
    manifest = compile_asset(load_file(EXAMPLES / "dummy.yaml"), TARGET, OPTIONS).to_dict()
    broken = copy.deepcopy(manifest)
    broken["spec"]["templates"][0]["container"]["imagee"] = "typo"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, argo_schema)


def test_compilation_is_deterministic() -> None:
    asset = load_file(EXAMPLES / "input-dummy.yaml")
    assert to_yaml(compile_asset(asset, TARGET, OPTIONS).to_dict()) == to_yaml(
        compile_asset(asset, TARGET, OPTIONS).to_dict()
    )


def test_python_authored_asset_compiles_like_yaml() -> None:
    from_yaml = compile_asset(load_file(EXAMPLES / "dummy.yaml"), TARGET, OPTIONS).to_dict()
    from_hera = compile_asset(load_file(EXAMPLES / "python" / "dummy_hera.py"), TARGET, OPTIONS).to_dict()
    assert from_hera == from_yaml


def test_template_is_self_contained_and_hardened() -> None:
    manifest = compile_asset(load_file(EXAMPLES / "input-dummy.yaml"), TARGET, OPTIONS).to_dict()
    spec = manifest["spec"]
    worker = spec["templates"][0]
    # No reliance on Argo's default artifact repository: every artifact names its bucket and key.
    for art in worker["inputs"]["artifacts"]:
        assert art["s3"]["bucket"] == "workflows"
        assert art["s3"]["key"].startswith("tenants/t-demo/jobs/{{workflow.name}}/inputs/")
        # each job's own short-lived keys (minted by the API), never a Secret that lives as long as the tenant
        assert art["s3"]["accessKeySecret"]["name"] == "{{workflow.name}}-s3"
        assert art["s3"]["sessionTokenSecret"] == {"name": "{{workflow.name}}-s3", "key": "sessionToken"}
    # Argo archives no log (its wait container would follow a symlink the worker planted): the API stores it.
    assert spec["archiveLogs"] is False and "archiveLocation" not in worker
    # The controller signals the wait container with the executor image's binary, not the worker-writable copy.
    assert json.loads(spec["podMetadata"]["annotations"]["workflows.argoproj.io/kill-cmd-wait"])[0] == "/bin/argoexec"
    # The executor's token: projected, short-lived, bound to the pod (no Secret that outlives the job).
    volumes = {v["name"]: v for v in json.loads(spec["podSpecPatch"])["volumes"]}
    volume = volumes["exec-sa-token"]
    [token] = [s["serviceAccountToken"] for s in volume["projected"]["sources"] if "serviceAccountToken" in s]
    assert token["expirationSeconds"] == 600
    # Argo's own emptyDirs are sized (issue #26): the shared run volume, the output staging, the unpacked inputs
    assert volumes["var-run-argo"]["emptyDir"]["sizeLimit"] == "256Mi"
    assert int(volumes["tmp-dir-argo"]["emptyDir"]["sizeLimit"]) == (16 + 256) * 1024**2  # outputSize 16Mi
    assert volumes["input-artifacts"]["emptyDir"]["sizeLimit"] == "2Gi"
    # every emptyDir the template itself declares has a size too
    assert all(v["emptyDir"].get("sizeLimit") for v in spec.get("volumes", []) if "emptyDir" in v)
    ctx = worker["container"]["securityContext"]
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"]["drop"] == ["ALL"]
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert spec["automountServiceAccountToken"] is False
    assert spec["activeDeadlineSeconds"] == 600
    assert manifest["metadata"]["labels"]["workflow-middlelayer.io/asset"] == "input-dummy"
    # Argo's narrower artifact names are mapped; the mapping travels with the template.
    names = {a["name"] for a in worker["inputs"]["artifacts"]}
    assert "input.zip" not in names and any(n.startswith("input-zip-") for n in names)
    zip_input = next(a for a in worker["inputs"]["artifacts"] if a["name"].startswith("input-zip-"))
    assert zip_input["archive"] == {"zip": {}} and zip_input["path"] == "/data"
    file_input = next(a for a in worker["inputs"]["artifacts"] if a["name"] == "input_testfile")
    assert file_input["archive"] == {"none": {}}
    # Outputs leave as one archive of the output directory (a mount point: never a symlink).
    [out] = worker["outputs"]["artifacts"]
    assert out["path"] == "/output" and out["archive"] == {"tar": {}}
    assert out["s3"]["key"] == "tenants/t-demo/exec/{{workflow.name}}/outputs.tgz"


def test_outputs_need_an_output_directory() -> None:
    from templates import AssetError, parse_document

    doc = yaml.safe_load((EXAMPLES / "dummy.yaml").read_text())
    del doc["worker"]["outputDir"]
    with pytest.raises(AssetError, match="outputDir"):
        parse_document(doc)


def test_resources_gpu_and_scheduling() -> None:
    from templates import parse_document

    doc = yaml.safe_load((EXAMPLES / "dummy.yaml").read_text())
    doc["resources"] = {
        "cpu": "2",
        "memory": "4Gi",
        "ephemeralStorage": "10Gi",
        "gpu": {"count": 2, "resource": "amd.com/gpu"},
        "nodeSelector": {"pool": "gpu"},
        "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
    }
    doc["limits"]["retries"] = 2
    manifest = compile_asset(parse_document(doc), TARGET, OPTIONS).to_dict()
    worker = manifest["spec"]["templates"][0]
    limits = worker["container"]["resources"]["limits"]
    assert limits == {"cpu": "2", "memory": "4Gi", "ephemeral-storage": "10Gi", "amd.com/gpu": "2"}
    assert manifest["spec"]["nodeSelector"] == {"pool": "gpu"}
    assert manifest["spec"]["tolerations"][0]["key"] == "gpu"
    assert worker["retryStrategy"]["limit"] == 2


def test_job_workflow_carries_nothing_argo_would_evaluate() -> None:
    asset = load_file(EXAMPLES / "dummy.yaml")
    job = new_job_id()
    wf = job_workflow(asset, namespace="ns", job_id=job, idempotency_key="k")
    assert wf["metadata"]["name"] == job
    # Only the template reference: no arguments, no spec overrides (Strict templateReferencing allows nothing else).
    assert wf["spec"] == {"workflowTemplateRef": {"name": "wml-dummy"}}
    with pytest.raises(ValueError):
        job_workflow(asset, namespace="ns", job_id="../etc")


@pytest.mark.parametrize(
    "value",
    ["{{workflow.name}}", '{{=sprig.env("X")}}', '"}],"image":"evil","x":[{"', "$(id)", "`id`", "a\nb"],
)
def test_env_values_travel_verbatim_in_the_job_secret(value: str) -> None:
    job = new_job_id()
    secret = env_secret(job, {"SOURCE": value, "DESTINATION": "/output/result"}, tenant="t-demo")
    assert secret["metadata"]["name"] == f"{job}-env"
    assert base64.b64decode(secret["data"]["SOURCE"]).decode() == value
    assert secret["metadata"]["labels"]["workflow-middlelayer.io/job"] == job


def test_env_reaches_the_worker_through_env_from_only() -> None:
    manifest = compile_asset(load_file(EXAMPLES / "dummy.yaml"), TARGET, OPTIONS).to_dict()
    container = manifest["spec"]["templates"][0]["container"]
    assert container["envFrom"] == [{"secretRef": {"name": ENV_SECRET_NAME, "optional": False}}]
    assert "arguments" not in manifest["spec"]
    assert "{{workflow.parameters" not in json.dumps(manifest)


def test_output_directory_is_a_capped_volume_saved_whole() -> None:
    manifest = compile_asset(load_file(EXAMPLES / "dummy.yaml"), TARGET, OPTIONS).to_dict()
    worker = manifest["spec"]["templates"][0]
    assert "podSpecPatch" not in worker
    assert {"name": OUTPUT_VOLUME, "emptyDir": {"sizeLimit": "16Mi"}} in worker["volumes"]
    assert {"name": OUTPUT_VOLUME, "mountPath": "/output"} in worker["container"]["volumeMounts"]
    assert [a["path"] for a in worker["outputs"]["artifacts"]] == ["/output"]


def test_workers_are_non_root_with_read_only_root_by_default() -> None:
    from templates import parse_document

    doc = yaml.safe_load((EXAMPLES / "dummy.yaml").read_text())
    del doc["security"]
    manifest = compile_asset(parse_document(doc), TARGET, OPTIONS).to_dict()
    spec, worker = manifest["spec"], manifest["spec"]["templates"][0]
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] == 65534
    assert worker["container"]["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "wml-tmp", "mountPath": "/tmp"} in worker["container"]["volumeMounts"]
    # the seed's dummy says otherwise, and keeps its meaning
    seed = compile_asset(load_file(EXAMPLES / "dummy.yaml"), TARGET, OPTIONS).to_dict()
    assert "runAsNonRoot" not in seed["spec"]["securityContext"]


def test_job_workflow_validates_against_argo_schema(argo_schema: dict) -> None:
    asset = load_file(EXAMPLES / "dummy.yaml")
    jsonschema.validate(job_workflow(asset, namespace="ns", job_id=new_job_id()), argo_schema)
