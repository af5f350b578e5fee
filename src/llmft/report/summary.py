"""An Evaluation's results as the report reads them: from summary.json, or from a cluster status."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class SummaryError(ValueError):
    """A summary that cannot be read; the message names the file and the field."""


@dataclass(frozen=True)
class MetricStat:
    """A per-arm mean with its bootstrap confidence interval (None where unknown)."""

    mean: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    n: int | None = None


@dataclass(frozen=True)
class ArmResult:
    """One arm's line in the comparison."""

    name: str
    base_model: str
    adapter: str | None
    rag: bool
    n: int | None
    retrieval_hit_rate: float | None
    metrics: dict[str, MetricStat]
    delta: dict[str, float]


@dataclass
class EvaluationSummary:
    """The whole comparison of one Evaluation."""

    name: str
    primary_metric: str
    baseline: str | None
    winner: str | None
    ranking: list[str]
    arms: list[ArmResult]
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def arm(self, name: str) -> ArmResult | None:
        return next((a for a in self.arms if a.name == name), None)

    def ranked_arms(self) -> list[ArmResult]:
        """Arms in ranking order; arms the ranking leaves out follow in their own order."""
        ranked = [a for n in self.ranking if (a := self.arm(n)) is not None]
        return ranked + [a for a in self.arms if a not in ranked]

    def metric_names(self) -> list[str]:
        """Every metric any arm has, primary first, then in first-seen order."""
        names: list[str] = [self.primary_metric]
        for arm in self.arms:
            names += [m for m in arm.metrics if m not in names]
        return [n for n in names if any(n in a.metrics for a in self.arms)]


def _number(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SummaryError(f"{where}: expected a number, got {value!r}")
    return float(value)


def model_name(value: Any) -> str:
    if isinstance(value, dict):  # a ModelSource written out whole
        name = str(value.get("name", ""))
        gguf = value.get("ggufFile")
        return f"{name} ({gguf})" if gguf else name
    return "" if value is None else str(value)


def parse_summary(data: Any, name: str, source: str = "summary.json") -> EvaluationSummary:
    """Validate the evaluator's summary.json shape into an EvaluationSummary."""
    if not isinstance(data, dict):
        raise SummaryError(f"{source}: expected a JSON object")
    arms_raw = data.get("arms")
    if not isinstance(arms_raw, list) or not arms_raw:
        raise SummaryError(f"{source}: arms: expected a non-empty list")
    arms: list[ArmResult] = []
    for i, raw in enumerate(arms_raw):
        where = f"{source}: arms[{i}]"
        if not isinstance(raw, dict) or not raw.get("name"):
            raise SummaryError(f"{where}: expected an object with a name")
        metrics: dict[str, MetricStat] = {}
        for metric, stat in (raw.get("metrics") or {}).items():
            mw = f"{where}.metrics.{metric}"
            if not isinstance(stat, dict):
                stat = {"mean": stat}
            n = stat.get("n")
            metrics[metric] = MetricStat(
                _number(stat.get("mean"), mw + ".mean"),
                _number(stat.get("ciLow"), mw + ".ciLow"),
                _number(stat.get("ciHigh"), mw + ".ciHigh"),
                int(n) if isinstance(n, int | float) else None,
            )
        delta = {
            m: v
            for m, d in (raw.get("delta") or {}).items()
            if (v := _number(d, f"{where}.delta.{m}")) is not None
        }
        n = raw.get("n")
        arms.append(
            ArmResult(
                name=str(raw["name"]),
                base_model=model_name(raw.get("baseModel")),
                adapter=str(raw["adapter"]) if raw.get("adapter") else None,
                rag=bool(raw.get("rag", False)),
                n=int(n) if isinstance(n, int | float) else None,
                retrieval_hit_rate=_number(
                    raw.get("retrievalHitRate"), where + ".retrievalHitRate"
                ),
                metrics=metrics,
                delta=delta,
            )
        )
    primary = data.get("primaryMetric")
    if not isinstance(primary, str) or not primary:
        raise SummaryError(f"{source}: primaryMetric: expected a metric name")
    known = {"primaryMetric", "baseline", "winner", "ranking", "arms"}
    return EvaluationSummary(
        name=name,
        primary_metric=primary,
        baseline=data.get("baseline"),
        winner=data.get("winner"),
        ranking=[str(r) for r in data.get("ranking") or []],
        arms=arms,
        source=source,
        extra={k: v for k, v in data.items() if k not in known},
    )


def load_summary(path: Path, name: str | None = None) -> EvaluationSummary:
    """Read an Evaluation's summary.json; `name` defaults to its directory's name."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise SummaryError(f"{path}: no such file (has the Evaluation succeeded?)") from None
    except json.JSONDecodeError as err:
        raise SummaryError(f"{path}: not valid JSON: {err}") from None
    return parse_summary(data, name or path.parent.name, str(path))


# Optional companions of a flat `<arm>.<metric>` mean in status.metrics.
STAT_SUFFIXES = {"ciLow", "ciHigh", "n"}


def _flat_arm_metrics(metrics: dict[str, Any], arm: str) -> dict[str, dict[str, Any]]:
    """`{metric: {mean, ciLow, ciHigh, n}}` for one arm from flat status.metrics keys.

    `<arm>.<metric>` is the mean; `<arm>.<metric>.ciLow|ciHigh|n`, when present, the rest.
    Arm and metric names never contain a dot, so the split is unambiguous.
    """
    prefix = f"{arm}."
    stats: dict[str, dict[str, Any]] = {}
    for key, value in metrics.items():
        if not key.startswith(prefix) or isinstance(value, bool):
            continue
        if not isinstance(value, int | float):
            continue
        metric, _, part = key.removeprefix(prefix).partition(".")
        if part and part not in STAT_SUFFIXES:
            continue
        stats.setdefault(metric, {})[part or "mean"] = value
    return {m: s for m, s in stats.items() if "mean" in s}


def summary_from_status(
    name: str,
    status: dict[str, Any],
    spec: dict[str, Any],
    job_models: dict[str, str] | None = None,
) -> EvaluationSummary:
    """Rebuild a comparison from an Evaluation's status on a cluster.

    The whole summary is used when the status carries it (`status.summary`); otherwise the
    flat `status.metrics` (`<arm>.<metric>` means, with CIs where present, and `winner`) and
    the spec's arms give it. `job_models` maps a FineTuneJob's name to its base model, for
    arms that name only the job.
    """
    where = f"Evaluation/{name} status"
    if isinstance(status.get("summary"), dict):
        return parse_summary(status["summary"], name, where + ".summary")
    metrics = status.get("metrics") or {}
    job_models = job_models or {}
    primary = spec.get("primaryMetric", "rouge")
    primary = "rougeL" if primary == "rouge" else primary
    arms: list[dict[str, Any]] = []
    for arm in spec.get("arms") or []:
        stats = _flat_arm_metrics(metrics, arm["name"])
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
            }
        )
    if not any(a["metrics"] for a in arms):
        raise SummaryError(f"{where}: no per-arm metrics yet (phase {status.get('phase', '?')})")
    baseline = arms[0]["name"]
    base_means = {m: s["mean"] for m, s in arms[0]["metrics"].items()}
    for arm in arms:
        arm["n"] = max((s.get("n") or 0 for s in arm["metrics"].values()), default=0) or None
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
        "winner": metrics.get("winner") or ranking[0],
        "ranking": ranking,
        "arms": arms,
    }
    return parse_summary(data, name, where + ".metrics")
