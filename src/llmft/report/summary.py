"""An Evaluation's results as the report reads them: from summary.json, or from a cluster status."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from llmft.api.evaluation import ArmSummary, EvaluationStatus, MetricSummary
from llmft.api.evaluation import EvaluationSummary as Summary
from llmft.api.resource import format_validation_error
from llmft.api.status import read_status_as


class SummaryError(ValueError):
    """A summary that cannot be read; the message names the file and the field."""


MetricStat = MetricSummary
ArmResult = ArmSummary


@dataclass
class EvaluationSummary:
    """One Evaluation's comparison as the report draws it: the typed summary, named and sourced."""

    name: str
    summary: Summary
    source: str = ""

    @property
    def primary_metric(self) -> str:
        return self.summary.primary_metric

    @property
    def baseline(self) -> str | None:
        return self.summary.baseline

    @property
    def winner(self) -> str | None:
        return self.summary.winner

    @property
    def ranking(self) -> list[str]:
        return self.summary.ranking

    @property
    def arms(self) -> list[ArmSummary]:
        return self.summary.arms

    @property
    def retrieval_backend(self) -> str | None:
        return self.summary.retrieval_backend

    @property
    def verdict(self) -> str | None:
        """The verdict in words: the winner, or why there is none."""
        return self.summary.verdict.reason if self.summary.verdict else None

    def split_label(self) -> str | None:
        """Which held-out questions were scored ("documents" / "closed-book"), when known."""
        return self.summary.split.name if self.summary.split else None

    def p_value(self, arm: ArmSummary, key: str) -> float | None:
        """The paired test's p-value of `arm` against the baseline on `key`."""
        test = (arm.comparison or {}).get(key)
        return test.p_value if test else None

    def arm(self, name: str) -> ArmSummary | None:
        return next((a for a in self.arms if a.name == name), None)

    def ranked_arms(self) -> list[ArmSummary]:
        """Arms in ranking order; arms the ranking leaves out follow in their own order."""
        ranked = [a for n in self.ranking if (a := self.arm(n)) is not None]
        return ranked + [a for a in self.arms if a not in ranked]

    def metric_names(self) -> list[str]:
        """Every metric any arm has, primary first, then in first-seen order."""
        names: list[str] = [self.primary_metric]
        for arm in self.arms:
            names += [m for m in arm.metrics if m not in names]
        return [n for n in names if any(n in a.metrics for a in self.arms)]


def model_name(value: Any) -> str:
    if isinstance(value, dict):  # a ModelSource written out whole
        name = str(value.get("name", ""))
        gguf = value.get("ggufFile")
        return f"{name} ({gguf})" if gguf else name
    return "" if value is None else str(value)


def parse_summary(data: Any, name: str, source: str = "summary.json") -> EvaluationSummary:
    """Read the evaluator's summary (summary.json or status.summary) through its typed model."""
    if not isinstance(data, dict):
        raise SummaryError(f"{source}: expected a JSON object")
    try:
        typed = Summary.model_validate(data)
    except ValidationError as err:
        raise SummaryError(format_validation_error(err, source)) from None
    return EvaluationSummary(name=name, summary=typed, source=source)


def load_summary(path: Path, name: str | None = None) -> EvaluationSummary:
    """Read an Evaluation's summary.json; `name` defaults to its directory's name."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise SummaryError(f"{path}: no such file (has the Evaluation succeeded?)") from None
    except json.JSONDecodeError as err:
        raise SummaryError(f"{path}: not valid JSON: {err}") from None
    return parse_summary(data, name or path.parent.name, str(path))


def _flat_arm_means(metrics: dict[str, Any], arm: str) -> dict[str, dict[str, Any]]:
    """`{metric: {mean}}` for one arm from the flat `<arm>.<metric>` means in status.metrics.

    Arm and metric names never contain a dot, so the split is unambiguous.
    """
    prefix = f"{arm}."
    return {
        key.removeprefix(prefix): {"mean": value}
        for key, value in metrics.items()
        if key.startswith(prefix)
        and "." not in key.removeprefix(prefix)
        and isinstance(value, int | float)
        and not isinstance(value, bool)
    }


# status.metrics key suffix -> PairedDifference field (as the evaluator's summary writes them)
_PAIRED_FIELDS = {
    "delta": "delta",
    "deltaCiLow": "ciLow",
    "deltaCiHigh": "ciHigh",
    "pValue": "pValue",
}


def _flat_arm_comparison(metrics: dict[str, Any], arm: str) -> dict[str, dict[str, Any]]:
    """`{metric: {delta, ciLow, ciHigh, pValue}}` from the flat `<arm>.<metric>.<field>` keys."""
    comparison: dict[str, dict[str, Any]] = {}
    for key, value in metrics.items():
        parts = key.split(".")
        if len(parts) == 3 and parts[0] == arm and parts[2] in _PAIRED_FIELDS:
            comparison.setdefault(parts[1], {})[_PAIRED_FIELDS[parts[2]]] = value
    return comparison


def summary_from_status(
    name: str,
    status: dict[str, Any],
    spec: dict[str, Any],
    job_models: dict[str, str] | None = None,
) -> EvaluationSummary:
    """Rebuild a comparison from an Evaluation's status on a cluster.

    The evaluator writes the whole summary into `status.summary`; an Evaluation finished by an
    older evaluator has only the flat `status.metrics` (`<arm>.<metric>` means and `winner`),
    from which, with the spec's arms, a comparison is rebuilt: the means, each arm's paired
    difference from the baseline and the verdict, without the means' own intervals. `job_models`
    maps a FineTuneJob's name to its base model, for arms that name only the job.
    """
    where = f"Evaluation/{name} status"
    typed = read_status_as(status, EvaluationStatus)
    if typed.summary is not None:
        return EvaluationSummary(name=name, summary=typed.summary, source=where + ".summary")
    metrics = typed.metrics
    job_models = job_models or {}
    primary = spec.get("primaryMetric", "rouge")
    primary = "rougeL" if primary == "rouge" else primary
    arms: list[dict[str, Any]] = []
    for arm in spec.get("arms") or []:
        stats = _flat_arm_means(metrics, arm["name"])
        hit = stats.pop("retrievalHitRate", None)
        job = arm.get("fineTuneJobRef")
        base = arm.get("baseModel")
        model = model_name(base) if base else job_models.get(job or "", f"(from {job})")
        arms.append(
            {
                "name": arm["name"],
                "baseModel": model,
                "adapter": job or arm.get("adapterPath"),
                "rag": bool((arm.get("rag") or {}).get("enabled")),
                "retrievalHitRate": hit["mean"] if hit else None,
                "metrics": stats,
                "comparison": _flat_arm_comparison(metrics, arm["name"]) or None,
            }
        )
    if not any(a["metrics"] for a in arms):
        raise SummaryError(f"{where}: no per-arm metrics yet (phase {typed.phase or '?'})")
    baseline = arms[0]["name"]
    base_means = {m: s["mean"] for m, s in arms[0]["metrics"].items()}
    for arm in arms:
        arm["delta"] = {
            m: s["mean"] - base_means[m] for m, s in arm["metrics"].items() if m in base_means
        }
    ranking = [
        a["name"]
        for a in sorted(
            arms,
            key=lambda a: (
                primary not in a["metrics"],
                -a["metrics"].get(primary, {"mean": 0})["mean"],
            ),
        )
    ]
    data = {
        "primaryMetric": primary,
        "baseline": baseline,
        # Only a significant difference names a winner.
        "winner": metrics.get("winner"),
        "ranking": ranking,
        "arms": arms,
    }
    if metrics.get("verdict") and metrics.get("significanceLevel") is not None:
        data["verdict"] = {
            "winner": metrics.get("winner"),
            "best": metrics.get("best", ranking[0]),
            "metric": primary,
            "significanceLevel": metrics["significanceLevel"],
            "pValue": metrics.get("pValue"),
            "reason": metrics["verdict"],
        }
    return parse_summary(data, name, where + ".metrics")
