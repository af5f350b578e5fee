"""The median stopping rule, on the eval losses trials report while they train.

At a trial's latest evaluation step s, its best eval loss so far is compared with the median of
the other trials' best eval loss up to the same step, among the trials that have got that far.
Worse than the median (with enough others to compare against): stop it. An eval loss that is no
longer finite (the trainer reports it as empty) means the trial diverged: stop it at once.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from llmft.api.experiment import EarlyStopping

History = Sequence[tuple[int, float | None]]  # (step, eval loss; None: not finite)


@dataclass(frozen=True)
class StopDecision:
    """Why a trial is stopped: the reason for its condition and a sentence for people."""

    reason: str
    message: str


def _loss(value: float | None) -> float:
    return math.inf if value is None or not math.isfinite(value) else float(value)


def best_until(history: History, step: int) -> float | None:
    """The lowest eval loss reported at or before `step` (inf if only non-finite), or None."""
    seen = [_loss(v) for s, v in history if s <= step]
    return min(seen) if seen else None


def median_rule(
    history: History, others: Mapping[str, History], rule: EarlyStopping
) -> StopDecision | None:
    """Whether to stop the trial whose eval-loss `history` is given; None to let it run."""
    if rule.algorithm == "none" or not history:
        return None
    step, latest = max(history, key=lambda point: point[0])
    if latest is None or not math.isfinite(latest):
        return StopDecision(
            "Diverged", f"eval loss is no longer finite at step {step}: the trial diverged"
        )
    if step < rule.start_step:
        return None
    mine = best_until(history, step)
    peers = [
        best
        for other in others.values()
        if other
        and max(s for s, _ in other) >= step
        and (best := best_until(other, step)) is not None
    ]
    if len(peers) < rule.min_trials or mine is None:
        return None
    median = statistics.median(peers)
    if mine > median:
        return StopDecision(
            "EarlyStopped",
            f"median rule: best eval loss {mine:.4g} by step {step} is worse than the median "
            f"{median:.4g} of {len(peers)} other trials at that step",
        )
    return None


def history_of(points: Sequence[Mapping[str, object]]) -> list[tuple[int, float | None]]:
    """(step, eval loss) pairs from status.progress.evalHistory entries."""
    out: list[tuple[int, float | None]] = []
    for p in points:
        step, value = p.get("step"), p.get("evalLoss")
        if isinstance(step, int):
            out.append((step, float(value) if isinstance(value, int | float) else None))
    return out
