"""A state directory as `llmft run -f examples/quickstart/` leaves it, without running a model.

The runner's own bookkeeping (plan, begin_run, finish_run) writes the status and spec files;
the artefacts the workloads would write are made here: the evaluator's items.jsonl with
per-item scores, its summary.json built from them by the evaluator's own summary code, and
the trainer's log_history.jsonl. Tests then read the numbers back from these files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from llmft.api import Phase, load_manifests
from llmft.api.evaluation import Bootstrap
from llmft.api.layout import ADAPTER_DIR, EVAL_ITEMS, EVAL_SUMMARY, RESULT, TRAIN_LOG
from llmft.runner.execute import begin_run, finish_run
from llmft.runner.plan import make_plan
from llmft.runner.state import StateDir
from llmft.workloads.evaluator.summary import (
    ArmScores,
    build_summary,
    score_keys,
    status_metrics,
)

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart"
ITEMS = 12
# How much each arm's answers overlap the reference on average; the fixture's scores scatter
# around these, so the arms rank lora-rag > base-rag > lora > base.
ARM_LEVEL = {"base": 0.18, "base-rag": 0.34, "lora": 0.27, "lora-rag": 0.41}


def _log_history(steps: int, eval_every: int) -> list[dict[str, Any]]:
    """What the HF Trainer logs: a falling train loss every step, eval loss every few."""
    events: list[dict[str, Any]] = []
    for step in range(1, steps + 1):
        events.append(
            {
                "step": step,
                "epoch": round(step / 15, 4),
                "loss": round(2.9 * np.exp(-step / 14) + 0.9, 4),
                "learning_rate": 1e-3 * (1 - step / steps),
            }
        )
        if step % eval_every == 0:
            events.append(
                {"step": step, "epoch": round(step / 15, 4), "eval_loss": 3.2 - 0.05 * step}
            )
    events.append({"step": steps, "train_runtime": 61.2, "train_loss": 1.84})
    return events


def _items(eval_spec: dict[str, Any], keys: list[str]) -> list[dict[str, Any]]:
    rng = np.random.default_rng(7)
    rows: list[dict[str, Any]] = []
    for arm in eval_spec["arms"]:
        level = ARM_LEVEL[arm["name"]]
        rag = bool((arm.get("rag") or {}).get("enabled"))
        for i in range(ITEMS):
            scores = {k: float(np.clip(rng.normal(level, 0.12), 0.0, 1.0)) for k in keys}
            if arm["name"] == "base" and i == 3:
                scores["bleu"] = None  # a score that could not be computed stays missing
            record = {
                "arm": arm["name"],
                "id": f"eval-{i:03d}",
                "question": f"Question {i} about the handbook?",
                "reference": f"Reference answer {i}.",
                "answer": f"Answer {i} from {arm['name']}.",
                "rag": rag,
                "goldChunkIds": [f"chunk-{i:03d}"],
            }
            if rag:
                hit = bool(rng.random() < 0.75)
                gold = {"id": f"chunk-{i:03d}", "score": 0.71}
                other = {"id": "chunk-999", "score": 0.42}
                record["retrieved"] = [gold, other] if hit else [other]
                record["hit"] = hit
            record["scores"] = scores
            rows.append(record)
    return rows


def _summary_from_items(eval_spec: dict[str, Any], items: list[dict[str, Any]]) -> dict:
    keys = score_keys(eval_spec["metrics"])
    arms = []
    for arm in eval_spec["arms"]:
        mine = [r for r in items if r["arm"] == arm["name"]]
        arms.append(
            ArmScores(
                name=arm["name"],
                base_model=arm["baseModel"]["name"],
                adapter=arm.get("adapterPath"),
                rag=bool((arm.get("rag") or {}).get("enabled")),
                n=len(mine),
                scores={k: [r["scores"][k] for r in mine] for k in keys},
                hits=[r.get("hit") for r in mine],
            )
        )
    summary = build_summary(arms, keys, eval_spec["primaryMetric"], Bootstrap(samples=200))
    summary["items"] = ITEMS
    summary["retrievalBackend"] = "embedded"
    return summary


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def build_quickstart_state(root: Path, evaluation_phase: Phase = Phase.SUCCEEDED) -> StateDir:
    """A state directory holding a finished quickstart run (files as the workloads write them)."""
    state = StateDir(root)
    plan = make_plan(load_manifests(QUICKSTART), state)
    for step in plan.steps:
        out = step.output_dir
        out.mkdir(parents=True, exist_ok=True)
        begin_run(state, step, "cpu")
        spec = step.manifest["spec"]
        metrics: dict[str, Any] = {}
        if step.resource.kind == "FineTuneJob":
            (out / ADAPTER_DIR).mkdir()
            hp = spec["hyperparameters"]
            history = _log_history(hp["maxSteps"], hp["evalSteps"])
            _write_jsonl(out / TRAIN_LOG, history)
            last_eval = [e["eval_loss"] for e in history if "eval_loss" in e][-1]
            metrics = {"steps": hp["maxSteps"], "trainLoss": 1.84, "evalLoss": last_eval}
        if step.resource.kind == "Evaluation":
            items = _items(spec, score_keys(spec["metrics"]))
            _write_jsonl(out / EVAL_ITEMS, items)
            summary = _summary_from_items(spec, items)
            (out / EVAL_SUMMARY).write_text(json.dumps(summary, indent=2))
            metrics = status_metrics(summary)
        (out / RESULT).write_text(json.dumps({"metrics": metrics, "outputs": {}}))
        state.update_status(step.key, {"metrics": metrics})
        phase = evaluation_phase if step.resource.kind == "Evaluation" else Phase.SUCCEEDED
        finish_run(state, step.key, phase, phase.value, "")
    return state


def read_summary(state: StateDir, name: str = "hr-compare") -> dict[str, Any]:
    """The summary.json the fixture wrote, read back from disk."""
    spec = state.read_spec(f"Evaluation/{name}") or {}
    return json.loads((Path(spec["spec"]["output"]["path"]) / EVAL_SUMMARY).read_text())


def read_items(state: StateDir, name: str = "hr-compare") -> list[dict[str, Any]]:
    spec = state.read_spec(f"Evaluation/{name}") or {}
    path = Path(spec["spec"]["output"]["path"]) / EVAL_ITEMS
    return [json.loads(line) for line in path.read_text().splitlines()]


def read_log_history(state: StateDir, job: str = "hr-lora") -> list[dict[str, Any]]:
    spec = state.read_spec(f"FineTuneJob/{job}") or {}
    path = Path(spec["spec"]["output"]["path"]) / TRAIN_LOG
    return [json.loads(line) for line in path.read_text().splitlines()]
