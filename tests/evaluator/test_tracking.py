"""The Evaluation's scores in a real MLflow server: per arm on its own run, and on each trial's
run (found by the adapter the trial tagged itself with), read back through the REST API."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from evaluator.conftest import evaluation_manifest
from llmft.workloads.entry import run_workload
from llmft.workloads.evaluator.pipeline import main
from servers.launch import MlflowServer

pytestmark = pytest.mark.mlflow


def tiny_adapter(model: Path, where: Path) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    peft_model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(model),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]),
    )
    peft_model.save_pretrained(where)
    return where


def test_arm_scores_are_logged_on_the_evaluation_run_and_on_the_trial_run(
    mlflow_server: MlflowServer,
    tiny_model: Path,
    dataset_dir: Path,
    tmp_path: Path,
    write_spec: Callable[[dict[str, Any]], Path],
) -> None:
    from mlflow.tracking import MlflowClient

    adapter = tiny_adapter(tiny_model, tmp_path / "trial" / "adapter")
    client = MlflowClient(mlflow_server.url)
    experiment_id = client.create_experiment("ml/eval-sweep")
    trial = client.create_run(
        experiment_id, tags={"llmft.name": "sweep-t00", "llmft.output.adapter": str(adapter)}
    )
    arms = [
        {"name": "base", "baseModel": {"name": str(tiny_model)}},
        {"name": "t00", "baseModel": {"name": str(tiny_model)}, "adapterPath": str(adapter)},
    ]
    manifest = evaluation_manifest(
        dataset_dir,
        tmp_path / "out",
        arms,
        metrics=["rouge", "bleu"],
        tracking={"mlflow": {"trackingUri": mlflow_server.url, "experimentName": "ml/eval-sweep"}},
    )

    assert run_workload("Evaluation", "test", main, ["--spec", str(write_spec(manifest))]) == 0

    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    means = {a["name"]: a["metrics"]["rougeL"]["mean"] for a in summary["arms"]}
    runs = mlflow_server.rest("runs/search", {"experiment_ids": [experiment_id]})["runs"]
    by_name = {{t["key"]: t["value"] for t in r["data"]["tags"]}["llmft.name"]: r for r in runs}
    evaluation = by_name["eval-test"]
    logged = {m["key"]: m["value"] for m in evaluation["data"]["metrics"]}
    assert logged["base.rougeL"] == means["base"] and logged["t00.rougeL"] == means["t00"]
    assert evaluation["info"]["status"] == "FINISHED"
    on_trial = {m["key"]: m["value"] for m in by_name["sweep-t00"]["data"]["metrics"]}
    assert on_trial["eval.rougeL"] == means["t00"] and "eval.bleu" in on_trial
    assert trial.info.run_id == by_name["sweep-t00"]["info"]["run_id"]
