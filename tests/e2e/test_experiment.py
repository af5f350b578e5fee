"""An Experiment end to end on this machine: `llmft run -f` of two tiny model families x
QLoRA/LoRA x RAG on/off with a random search of 4 trials, the median rule stopping the trial
whose learning rate is far too high, the Evaluation of the rest, the local MLflow store, and
`llmft report`.

The two families are Llama 3 8B Instruct and Mistral 7B Instruct v0.3: their own architectures
shrunk to a few layers with random weights, with their real tokenizers and chat templates
(tests/fixtures/models; nothing can be downloaded here).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from family_models import build_tiny_family_model
from llmft.api.resource import parse_resource
from llmft.experiments.space import propose
from llmft.models import MINILM
from trainer.conftest import write_dataset

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1800)]

SANE, TOO_HIGH = 0.003, 1.0


def experiment(llama: Path, mistral: Path, dataset: Path, seed: int) -> dict[str, Any]:
    return {
        "apiVersion": "llmft.io/v1alpha1",
        "kind": "Experiment",
        "metadata": {"name": "sweep"},
        "spec": {
            "dataset": {"path": str(dataset)},
            "matrix": {
                "models": [
                    {"name": "llama3", "baseModel": {"name": str(llama)}},
                    {"name": "mistral", "baseModel": {"name": str(mistral)}},
                ],
                "methods": ["qlora", "lora"],
                "modes": ["instruct"],
                "rag": [False, True],
            },
            "fineTune": {
                "hyperparameters": {
                    "maxSteps": 4,
                    "batchSize": 4,
                    "gradientAccumulationSteps": 1,
                    "maxSeqLength": 128,
                    "warmupRatio": 0.0,
                    "lrScheduler": "constant",
                    "gradientCheckpointing": False,
                    "loggingSteps": 1,
                    "evalSteps": 2,
                    "saveSteps": 2,
                    "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
                },
                "resources": {"gpuCount": 0, "cpu": "2"},
            },
            "search": {
                "algorithm": "random",
                "seed": seed,
                "parameters": [{"name": "learningRate", "values": [SANE, TOO_HIGH]}],
            },
            "budget": {"maxTrials": 4},
            "earlyStopping": {"algorithm": "median", "minTrials": 2, "startStep": 1},
            "evaluation": {
                "trials": 4,
                "metrics": ["rouge", "bleu"],
                "primaryMetric": "rouge",
                "arms": {"baseWithRag": False},
                "generation": {"maxNewTokens": 8, "batchSize": 2},
                "retrieval": {"backend": "embedded", "embeddingModel": MINILM},
                "bootstrap": {"samples": 100},
                "resources": {"gpuCount": 0, "cpu": "2"},
            },
        },
    }


def seed_with_one_late_diverging_trial(body: dict[str, Any]) -> int:
    """A seed whose first two trials (the median's peers) are sane and one later one is not."""
    for seed in range(200):
        body["spec"]["search"]["seed"] = seed
        spec = parse_resource(body).spec
        rates = [propose(spec, i).parameters["learningRate"] for i in range(4)]
        if rates[:2] == [SANE, SANE] and rates[2:].count(TOO_HIGH) == 1:
            return seed
    raise AssertionError("no such seed")


def test_an_experiment_runs_end_to_end_on_the_cpu(tmp_path: Path) -> None:
    llama = build_tiny_family_model("meta-llama-3-8b-instruct", tmp_path / "llama3")
    mistral = build_tiny_family_model("mistral-7b-instruct-v0.3", tmp_path / "mistral")
    dataset = write_dataset(tmp_path / "dataset", repeat=3)
    body = experiment(llama, mistral, dataset, 0)
    body["spec"]["search"]["seed"] = seed_with_one_late_diverging_trial(body)
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "experiment.yaml").write_text(yaml.safe_dump(body))
    state = tmp_path / "state"

    run = subprocess.run(
        [sys.executable, "-m", "llmft", "run", "-f", str(manifests), "--state-dir", str(state)],
        capture_output=True,
        text=True,
        timeout=1500,
    )

    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    status = json.loads((state / "status" / "Experiment" / "sweep.json").read_text())
    assert status["phase"] == "Succeeded", status
    trials = status["trials"]
    assert len(trials) == 4 and status["counts"]["done"] == "4/4"
    assert len({(t["cell"]["model"], t["cell"]["method"], t["cell"]["rag"]) for t in trials}) == 4
    diverging = next(t for t in trials if t["parameters"]["learningRate"] == TOO_HIGH)
    assert diverging["reason"] in ("EarlyStopped", "Diverged"), diverging
    assert diverging.get("step", 0) < 4
    # The sane trials either finish or fall behind the median too (the tiny random models
    # differ); those that finish are ranked, the best of them by eval loss.
    succeeded = [t for t in trials if t["phase"] == "Succeeded"]
    assert succeeded and all(t["parameters"]["learningRate"] == SANE for t in succeeded)
    assert status["counts"]["stopped"] == 4 - len(succeeded)
    best = min(succeeded, key=lambda t: t["evalLoss"])
    assert status["bestTrial"]["name"] == best["name"]
    ranked = [r["arm"] for r in status["ranking"]]
    assert sorted(ranked) == sorted(
        ["base-llama3", "base-mistral"]
        + [f"t{t['index']:02d}{suffix}" for t in succeeded for suffix in ("", "-rag")]
    )
    # Every trial and the evaluation are runs of one MLflow experiment in the local store.
    with sqlite3.connect(state / "mlflow.db") as db:
        runs = db.execute(
            "select r.name, r.status from runs r join experiments e "
            "on r.experiment_id = e.experiment_id where e.name = 'default/sweep'"
        ).fetchall()
        losses = db.execute("select count(*) from metrics where key = 'loss'").fetchone()[0]
    assert len(runs) == 5, runs
    # Finished trials and the evaluation FINISHED, stopped trials KILLED.
    assert sorted(s for _, s in runs).count("FINISHED") == len(succeeded) + 1
    assert losses >= 4 * 2

    again = subprocess.run(
        [sys.executable, "-m", "llmft", "run", "-f", str(manifests), "--state-dir", str(state)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert again.returncode == 0, again.stdout[-2000:]
    assert (
        json.loads((state / "status" / "Experiment" / "sweep.json").read_text())["trials"] == trials
    )

    report = subprocess.run(
        [
            sys.executable,
            "-m",
            "llmft",
            "report",
            "--state-dir",
            str(state),
            "--out",
            str(tmp_path / "report"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert report.returncode == 0, report.stdout[-2000:] + report.stderr[-2000:]
    drawn = {p.name for p in (tmp_path / "report").iterdir()}
    assert {"sweep-heatmap.png", "sweep-parameters.png", "sweep-trial-losses.png"} <= drawn
    assert "sweep" in (tmp_path / "report" / "report.html").read_text()
