"""The Evaluation's MLflow run: per-arm scores; and each tuned arm's scores on its trial's run.

A tuned arm's adapter directory is the one its FineTuneJob tagged its own run with
(llmft.output.adapter), so the scores also land on the trial they belong to: MLflow then
compares trials by ROUGE or judge accuracy, not only by eval loss.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmft.api.evaluation import EvaluationSpec
from llmft.tracking import MlflowRun, find_runs


def run_params(spec: EvaluationSpec) -> dict[str, Any]:
    """What an evaluation is, as MLflow params: its arms, metrics and primary metric."""
    return {
        "arms": [a.name for a in spec.arms],
        "metrics": list(spec.metrics),
        "primaryMetric": spec.primary_metric,
    }


def log_scores(run: MlflowRun, spec: EvaluationSpec, summary: Mapping[str, Any]) -> None:
    """Every arm's mean of every score as `<arm>.<score>`, the winner as tags, then the scores
    of each tuned arm on its trial's run as `eval.<score>` (`eval_rag.<score>` with RAG)."""
    run.log_metrics({"items": summary.get("items")})
    arms = {a["name"]: a for a in summary["arms"]}
    run.log_metrics(
        {
            f"{name}.{key}": stat.get("mean")
            for name, arm in arms.items()
            for key, stat in arm["metrics"].items()
        }
    )
    run.set_tags(
        {
            "llmft.winner": summary.get("winner"),
            "llmft.verdict": (summary.get("verdict") or {}).get("reason"),
            "llmft.ranking": " > ".join(summary.get("ranking", [])),
        }
    )
    adapters = {a.adapter_path: a for a in spec.arms if a.adapter_path}
    trial_runs = find_runs(run, "llmft.output.adapter", adapters)
    for adapter, run_id in trial_runs.items():
        arm = adapters[adapter]
        prefix = "eval_rag" if arm.rag.enabled else "eval"
        scores = {f"{prefix}.{k}": s.get("mean") for k, s in arms[arm.name]["metrics"].items()}
        trial = MlflowRun(run.client, run_id, run.experiment_id, resumed=True)
        trial.log_metrics(scores)
    run.finish("FINISHED")
