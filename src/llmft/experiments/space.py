"""From the matrix and the search space to trials: grid, random, or Bayesian (optuna's TPE).

Every proposal is a pure function of the spec, the trial's index and (Bayesian only) the trials
before it, so an operator that restarts, or a rerun of `llmft run`, proposes the same trials.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from llmft.api.experiment import INTEGER, ExperimentSpec, Matrix, SearchParameter

Value = float | int | str


@dataclass(frozen=True)
class Cell:
    """One matrix cell: which model, method, mode, and RAG in training."""

    model: str
    method: str
    mode: str
    rag: bool

    def to_wire(self) -> dict[str, Any]:
        return {"model": self.model, "method": self.method, "mode": self.mode, "rag": self.rag}

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Cell:
        return cls(str(data["model"]), str(data["method"]), str(data["mode"]), bool(data["rag"]))


@dataclass(frozen=True)
class Trial:
    """A trial to run: its number, its cell and the searched hyper-parameters' values."""

    index: int
    cell: Cell
    parameters: dict[str, Value] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """What a finished or running trial told the search (for the Bayesian sampler)."""

    trial: Trial
    state: str  # running, complete, stopped, failed
    eval_loss: float | None = None


def cells(matrix: Matrix) -> list[Cell]:
    """Every cell, models first; causal cells once, without RAG (the corpus has no questions)."""
    out: list[Cell] = []
    for model, method, mode in itertools.product(
        [m.name for m in matrix.models], matrix.methods, matrix.modes
    ):
        rags = sorted(set(matrix.rag)) if mode == "instruct" else [False]
        out.extend(Cell(model, method, mode, rag) for rag in rags)
    return out


def _typed(name: str, value: Value) -> Value:
    if name in INTEGER and not isinstance(value, str):
        return round(float(value))
    return float(value) if isinstance(value, int | float) else value


def grid_points(param: SearchParameter) -> list[Value]:
    """The values a grid tries for one parameter, in order, without repeats."""
    if param.categories is not None:
        raw: list[Value] = list(param.categories)
    elif param.values is not None:
        raw = list(param.values)
    else:
        assert param.min is not None and param.max is not None and param.count is not None
        lo, hi, n = param.min, param.max, param.count
        if param.scale == "log":
            step = (math.log(hi) - math.log(lo)) / (n - 1)
            raw = [math.exp(math.log(lo) + i * step) for i in range(n)]
        else:
            raw = [lo + i * (hi - lo) / (n - 1) for i in range(n)]
    typed = [_typed(param.name, v) for v in raw]
    return list(dict.fromkeys(typed))


def grid_size(spec: ExperimentSpec) -> int:
    return len(cells(spec.matrix)) * math.prod(len(grid_points(p)) for p in spec.search.parameters)


def planned_trials(spec: ExperimentSpec) -> int:
    """How many trials the Experiment runs in all."""
    if spec.search.algorithm == "grid":
        return min(grid_size(spec), spec.budget.max_trials)
    return spec.budget.max_trials


def grid_trial(spec: ExperimentSpec, index: int) -> Trial:
    """Trial `index` of the grid: cells in matrix order, each with every grid point."""
    names = [p.name for p in spec.search.parameters]
    points = list(itertools.product(*(grid_points(p) for p in spec.search.parameters)))
    cell = cells(spec.matrix)[index // len(points)]
    return Trial(index, cell, dict(zip(names, points[index % len(points)], strict=True)))


def _cell_in_turn(spec: ExperimentSpec, index: int) -> Cell:
    # Cells are taken in a shuffled order, each before any repeats: a budget smaller than the
    # matrix still covers as many cells as it can, and a larger one covers them evenly.
    order = cells(spec.matrix)
    random.Random(f"cells:{spec.search.seed}").shuffle(order)
    return order[index % len(order)]


def _sample(param: SearchParameter, rng: random.Random) -> Value:
    if param.categories is not None:
        return rng.choice(param.categories)
    if param.values is not None:
        return _typed(param.name, rng.choice(param.values))
    assert param.min is not None and param.max is not None
    if param.scale == "log":
        value = math.exp(rng.uniform(math.log(param.min), math.log(param.max)))
    else:
        value = rng.uniform(param.min, param.max)
    return _typed(param.name, value)


def random_trial(spec: ExperimentSpec, index: int) -> Trial:
    """Trial `index` of a random search: its own seeded draw, so it never depends on others."""
    rng = random.Random(f"trial:{spec.search.seed}:{index}")
    params: dict[str, Value] = {p.name: _sample(p, rng) for p in spec.search.parameters}
    return Trial(index, _cell_in_turn(spec, index), params)


def _distribution(param: SearchParameter) -> Any:
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    if param.categories is not None:
        return CategoricalDistribution(list(param.categories))
    if param.values is not None:
        return CategoricalDistribution([_typed(param.name, v) for v in param.values])
    assert param.min is not None and param.max is not None
    log = param.scale == "log"
    if param.name in INTEGER:
        return IntDistribution(math.ceil(param.min), math.floor(param.max), log=log)
    return FloatDistribution(param.min, param.max, log=log)


def startup_trials(spec: ExperimentSpec) -> int:
    """Random trials before TPE models the results: a quarter of the budget, 2 to 10."""
    return min(10, max(2, spec.budget.max_trials // 4))


def bayesian_trial(spec: ExperimentSpec, index: int, history: Sequence[Outcome]) -> Trial:
    """Trial `index` from optuna's TPE, told every earlier trial (running ones as liars)."""
    import optuna
    from optuna.trial import TrialState, create_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists: dict[str, Any] = {p.name: _distribution(p) for p in spec.search.parameters}
    sampler = optuna.samplers.TPESampler(
        seed=spec.search.seed * 100_003 + index,
        n_startup_trials=startup_trials(spec),
        constant_liar=True,
    )
    study = optuna.create_study(direction="minimize", sampler=sampler)
    states = {
        "complete": TrialState.COMPLETE,
        "stopped": TrialState.COMPLETE,
        "failed": TrialState.FAIL,
        "running": TrialState.RUNNING,
    }
    for outcome in history:
        state = states[outcome.state]
        value = outcome.eval_loss
        if state == TrialState.COMPLETE and (value is None or not math.isfinite(value)):
            state = TrialState.FAIL
        told = {k: v for k, v in outcome.trial.parameters.items() if k in dists}
        if set(told) != set(dists):
            continue  # made under another search space: nothing to learn from it
        study.add_trial(
            create_trial(
                state=state,
                params=told,
                distributions=dists,
                value=value if state == TrialState.COMPLETE else None,
            )
        )
    ask = study.ask(dists)
    chosen: dict[str, Value] = {name: _typed(name, ask.params[name]) for name in dists}
    return Trial(index, _cell_in_turn(spec, index), chosen)


def propose(spec: ExperimentSpec, index: int, history: Sequence[Outcome] = ()) -> Trial:
    """Trial number `index` (0-based) under the spec's algorithm."""
    if spec.search.algorithm == "grid":
        return grid_trial(spec, index)
    if spec.search.algorithm == "random":
        return random_trial(spec, index)
    return bayesian_trial(spec, index, history)
