"""The manifests under examples/ are valid resources: users apply them as they are."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmft.api.resource import load_manifests

EXAMPLES = Path(__file__).parents[1] / "examples"


@pytest.mark.parametrize("name", ["quickstart", "cluster", "cluster-quickstart"])
def test_example_manifests_parse_as_the_three_kinds(name: str) -> None:
    kinds = {res.kind for res in load_manifests(EXAMPLES / name)}
    assert kinds == {"DatasetGeneration", "FineTuneJob", "Evaluation"}


def test_cluster_example_evaluates_every_fine_tune_job() -> None:
    resources = load_manifests(EXAMPLES / "cluster")
    jobs = {r.metadata.name for r in resources if r.kind == "FineTuneJob"}
    (evaluation,) = [r for r in resources if r.kind == "Evaluation"]
    assert jobs == {arm.fine_tune_job_ref for arm in evaluation.spec.arms} - {None}


def test_cluster_quickstart_reads_only_what_a_cluster_has() -> None:
    """No local path (a pod has none): documents from a ConfigMap, models from the artefact
    volume, Ollama and Weaviate from the chart's settings; base and tuned, each with RAG."""
    resources = {r.kind: r for r in load_manifests(EXAMPLES / "cluster-quickstart")}
    dataset, job, evaluation = (
        resources[k] for k in ("DatasetGeneration", "FineTuneJob", "Evaluation")
    )

    assert dataset.spec.source.config_map and dataset.spec.source.path is None
    assert dataset.spec.generator.backend == "ollama"
    assert "ollama_host" not in dataset.spec.generator.model_fields_set
    assert job.spec.dataset.dataset_generation_ref == dataset.metadata.name
    assert job.spec.base_model.name.startswith("/artifacts/")
    arms = {a.name: a for a in evaluation.spec.arms}
    assert list(arms) == ["base", "base-rag", "tuned", "tuned-rag"]
    assert {n for n, a in arms.items() if a.rag and a.rag.enabled} == {"base-rag", "tuned-rag"}
    assert {a.fine_tune_job_ref for a in arms.values()} == {None, job.metadata.name}
    assert all(a.base_model.name.startswith("/artifacts/") for a in arms.values() if a.base_model)
    retrieval = evaluation.spec.retrieval
    assert retrieval.backend == "weaviate" and "weaviate_url" not in retrieval.model_fields_set
    assert retrieval.embedding_model.startswith("/artifacts/")
    assert set(evaluation.spec.metrics) == {"bleu", "chrf", "rouge", "ngram"}


def _model_examples() -> list[Path]:
    return sorted((EXAMPLES / "models").glob("*.yaml"))


def test_every_seed_model_has_a_fine_tune_job_and_an_evaluation_of_it() -> None:
    from model_fixtures import SEED_MODELS

    seen = set()
    for path in _model_examples():
        resources = load_manifests(path)
        (job,) = [r for r in resources if r.kind == "FineTuneJob"]
        (evaluation,) = [r for r in resources if r.kind == "Evaluation"]
        assert {a.fine_tune_job_ref for a in evaluation.spec.arms} >= {job.metadata.name}
        seen.add(job.spec.base_model.name)
    assert seen == set(SEED_MODELS.values())


@pytest.mark.parametrize("path", _model_examples(), ids=lambda p: p.stem)
def test_model_example_fits_an_a10_with_its_family_preset(path: Path) -> None:
    """The manifest's run, at the family preset, passes the memory pre-check on 24 GB."""
    from llmft.families import A10_BUDGET_GIB
    from llmft.workloads import modeling
    from llmft.workloads.trainer.model import (
        GiB,
        estimate_training_memory,
        resolve_hyperparameters,
    )
    from model_fixtures import SEED_MODELS, model_dir

    (job,) = [r for r in load_manifests(path) if r.kind == "FineTuneJob"]
    fixture = next(k for k, hub in SEED_MODELS.items() if hub == job.spec.base_model.name)
    # The model's real tokenizer and full-size config stand in for the Hub download.
    local = job.spec.base_model.model_copy(update={"name": str(model_dir(fixture))})
    spec = job.spec.model_copy(update={"base_model": local})
    fmt = modeling.load_chat_format(local)
    spec = resolve_hyperparameters(spec, fmt.family)
    assert job.spec.hyperparameters.batch_size is None  # the preset, not a hand-picked size
    estimate = estimate_training_memory(
        modeling.meta_model(local), spec, 2, "cuda", fmt.family.mlp_activations
    )
    assert estimate.total <= A10_BUDGET_GIB * GiB, estimate.describe()


def test_experiment_example_is_the_seed_matrix_over_the_cluster_dataset() -> None:
    (experiment,) = load_manifests(EXAMPLES / "experiment")
    datasets = {r.metadata.name for r in load_manifests(EXAMPLES / "cluster")}

    assert experiment.kind == "Experiment"
    assert experiment.spec.dataset.dataset_generation_ref in datasets
    assert experiment.spec.matrix.cell_count() == 8
