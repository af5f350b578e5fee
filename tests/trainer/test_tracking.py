"""The trainer's tracking against a real MLflow server, read back through MLflow's REST API;
and its progress under Kubeflow Trainer's trainerStatus names."""

from __future__ import annotations

from pathlib import Path

import pytest

from servers.launch import MlflowServer
from trainer.conftest import RunTrainer, finetune_manifest

pytestmark = pytest.mark.slow


@pytest.mark.mlflow
def test_a_trial_logs_params_step_metrics_final_metrics_and_tags_to_mlflow(
    mlflow_server: MlflowServer,
    tiny_model: Path,
    dataset_dir: Path,
    tmp_path: Path,
    run_trainer: RunTrainer,
) -> None:
    manifest = finetune_manifest(
        tiny_model,
        dataset_dir,
        tmp_path / "out",
        tracking={"mlflow": {"trackingUri": mlflow_server.url, "experimentName": "ml/sweep"}},
    )
    manifest["metadata"].update(
        name="sweep-t01",
        uid="0b1c-uid",
        labels={"llmft.io/experiment": "sweep", "llmft.io/trial": "1"},
    )

    rc, status = run_trainer(manifest)

    assert rc == 0, status
    experiment = mlflow_server.rest("experiments/get-by-name", experiment_name="ml/sweep")
    runs = mlflow_server.rest(
        "runs/search",
        {"experiment_ids": [experiment["experiment"]["experiment_id"]]},
    )["runs"]
    assert len(runs) == 1
    run = runs[0]
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    assert params["method"] == "lora" and params["hyperparameters.learningRate"] == "0.005"
    assert params["hyperparameters.lora.r"] == "8"
    assert tags["llmft.name"] == "sweep-t01" and tags["llmft.uid"] == "0b1c-uid"
    assert tags["llmft.experiment"] == "sweep" and tags["llmft.trial"] == "1"
    assert tags["llmft.output.adapter"] == str(tmp_path / "out" / "adapter")
    assert run["info"]["status"] == "FINISHED"
    history = mlflow_server.rest(
        "metrics/get-history", run_id=run["info"]["run_id"], metric_key="loss"
    )["metrics"]
    assert [m["step"] for m in history] == list(range(1, 7))
    evals = mlflow_server.rest(
        "metrics/get-history", run_id=run["info"]["run_id"], metric_key="eval_loss"
    )["metrics"]
    assert [m["step"] for m in evals] == [3, 6]
    final = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    assert final["final.evalLoss"] == pytest.approx(status["metrics"]["evalLoss"], rel=1e-5)


def test_progress_carries_trainer_status_and_the_eval_history(
    tiny_model: Path, dataset_dir: Path, tmp_path: Path, run_trainer: RunTrainer
) -> None:
    rc, status = run_trainer(finetune_manifest(tiny_model, dataset_dir, tmp_path / "out"))

    assert rc == 0, status
    trainer = status["trainerStatus"]
    assert trainer["progressPercentage"] == 100
    assert trainer["estimatedRemainingSeconds"] >= 0
    metrics = {m["name"]: m["value"] for m in trainer["metrics"]}
    assert metrics["step"] == "6" and float(metrics["eval_loss"]) > 0 and "loss" in metrics
    assert [p["step"] for p in status["progress"]["evalHistory"]] == [3, 6]


def test_an_unreachable_mlflow_fails_the_trial_at_once_naming_the_field(
    tiny_model: Path, dataset_dir: Path, tmp_path: Path, run_trainer: RunTrainer
) -> None:
    manifest = finetune_manifest(
        tiny_model,
        dataset_dir,
        tmp_path / "out",
        tracking={"mlflow": {"trackingUri": "http://127.0.0.1:9"}},
    )

    rc, status = run_trainer(manifest)

    assert rc == 1
    assert status["progress"]["message"].startswith(
        "failed: spec.tracking.mlflow.trackingUri: cannot use MLflow at http://127.0.0.1:9"
    )
