"""MLflow tracking for the workloads: one MLflow run per resource, resumed when its pod restarts.

The run lives in the MLflow experiment the spec names (an Experiment names one for all its
trials), is tagged with the resource's kind, name, namespace and uid (and its Experiment and
trial, when it is one), and its id is kept in the output directory, so a restarted pod logs
into the same run. Reaching the server is checked when the run starts (a wrong URI or token
fails the workload at once, naming the field); a server that goes away later costs a warning,
never the training run. Credentials come from the environment (MLFLOW_TRACKING_TOKEN,
MLFLOW_TRACKING_PASSWORD), which the operator fills from the Secrets the spec references.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from llmft.api.common import MlflowTracking
from llmft.api.resource import Resource
from llmft.workloads.entry import WorkloadError

log = logging.getLogger("llmft.tracking")

RUN_FILE = "mlflow_run.json"
FIELD = "spec.tracking.mlflow"
BATCH = 100  # MLflow's log_batch takes at most 100 params and 1000 metrics per call
LABEL_EXPERIMENT = "llmft.io/experiment"
LABEL_TRIAL = "llmft.io/trial"


class TrackingError(WorkloadError):
    """The MLflow server cannot be used as configured; the message names the field."""


def experiment_name(cfg: MlflowTracking, res: Resource[Any]) -> str:
    """The MLflow experiment: the spec's, else <namespace>/<Experiment or resource name>."""
    if cfg.experiment_name:
        return cfg.experiment_name
    owner = res.metadata.labels.get(LABEL_EXPERIMENT) or res.metadata.name
    return f"{res.metadata.namespace}/{owner}"


def resource_tags(res: Resource[Any]) -> dict[str, str]:
    """Tags that tie a run to its resource (and to its Experiment and trial, if it is one)."""
    extra = res.metadata.model_extra or {}
    tags = {
        "llmft.kind": res.kind,
        "llmft.name": res.metadata.name,
        "llmft.namespace": res.metadata.namespace,
    }
    if extra.get("uid"):
        tags["llmft.uid"] = str(extra["uid"])
    labels = res.metadata.labels
    if labels.get(LABEL_EXPERIMENT):
        tags["llmft.experiment"] = labels[LABEL_EXPERIMENT]
    if labels.get(LABEL_TRIAL):
        tags["llmft.trial"] = labels[LABEL_TRIAL]
    return tags


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested settings as MLflow params: dotted keys, string values (lists as JSON)."""
    out: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, list | tuple):
            out[name] = json.dumps(value)
        elif value is not None:
            out[name] = str(value)
    return out


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


class MlflowRun:
    """An open MLflow run; every call after the start only warns when the server fails."""

    def __init__(self, client: Any, run_id: str, experiment_id: str, resumed: bool) -> None:
        self.client = client
        self.run_id = run_id
        self.experiment_id = experiment_id
        self.resumed = resumed
        self._warned = False

    @classmethod
    def start(
        cls, cfg: MlflowTracking, res: Resource[Any], output_dir: Path, run_name: str | None = None
    ) -> MlflowRun:
        """Open (or, after a restart, reopen) the resource's run; TrackingError if unusable."""
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        if cfg.username:
            os.environ.setdefault("MLFLOW_TRACKING_USERNAME", cfg.username)
        # A server that does not answer fails the start within a minute, not after MLflow's
        # default of several retries with long back-offs.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
        client = MlflowClient(tracking_uri=cfg.tracking_uri)
        name = experiment_name(cfg, res)
        run_file = output_dir / RUN_FILE
        try:
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                try:
                    experiment_id = client.create_experiment(name)
                except MlflowException:  # created by a sibling trial in the meantime
                    found = client.get_experiment_by_name(name)
                    if found is None:
                        raise
                    experiment_id = found.experiment_id
            else:
                experiment_id = experiment.experiment_id
            previous = _read_run_id(run_file)
            if previous is not None:
                try:
                    client.get_run(previous)
                    client.update_run(previous, status="RUNNING")
                    log.info("MLflow: resuming run %s in experiment %s", previous, name)
                    return cls(client, previous, experiment_id, resumed=True)
                except MlflowException:
                    log.warning("MLflow run %s is gone; starting a new run", previous)
            run = client.create_run(
                experiment_id, run_name=run_name or res.metadata.name, tags=resource_tags(res)
            )
        except (MlflowException, OSError) as err:
            raise TrackingError(
                f"{FIELD}.trackingUri: cannot use MLflow at {cfg.tracking_uri} "
                f"(experiment {name!r}): {_first_line(err)}"
            ) from None
        output_dir.mkdir(parents=True, exist_ok=True)
        run_file.write_text(json.dumps({"runId": run.info.run_id, "experiment": name}))
        log.info("MLflow: run %s in experiment %s", run.info.run_id, name)
        return cls(client, run.info.run_id, experiment_id, resumed=False)

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except Exception as err:  # tracking must never stop the workload
            if not self._warned:
                log.warning("MLflow: %s failed (%s); training goes on", what, _first_line(err))
                self._warned = True

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log parameters once; on a resumed run the ones already there are left alone."""
        from mlflow.entities import Param

        flat = flatten(params)
        if self.resumed:
            try:
                logged = self.client.get_run(self.run_id).data.params
            except Exception:
                logged = {}
            flat = {k: v for k, v in flat.items() if k not in logged}
        items = [Param(k[:250], v[:6000]) for k, v in flat.items()]
        for i in range(0, len(items), BATCH):
            self._call(
                "logging params", self.client.log_batch, self.run_id, params=items[i : i + BATCH]
            )

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Log the finite numeric values of `metrics` at `step`."""
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [
            Metric(key, value, now, step or 0)
            for key, raw in metrics.items()
            if (value := _finite(raw)) is not None
        ]
        for i in range(0, len(items), BATCH):
            self._call(
                "logging metrics", self.client.log_batch, self.run_id, metrics=items[i : i + BATCH]
            )

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)) for k, v in tags.items() if v is not None]
        if items:
            self._call("setting tags", self.client.log_batch, self.run_id, tags=items)

    def finish(self, status: str = "FINISHED") -> None:
        """End the run: FINISHED, FAILED or KILLED."""
        self._call("ending the run", self.client.set_terminated, self.run_id, status=status)


@contextmanager
def tracked_run(
    cfg: MlflowTracking | None, res: Resource[Any], out: Path, params: Mapping[str, Any]
) -> Iterator[MlflowRun | None]:
    """The resource's MLflow run with `params` logged (None when the spec sets no MLflow);
    ended FAILED, or KILLED on an interrupt, when the block raises. Ending it on success is
    the block's job: each workload logs its own final scores first."""
    if cfg is None:
        yield None
        return
    run = MlflowRun.start(cfg, res, out)
    run.log_params(params)
    try:
        yield run
    except BaseException as err:
        run.finish("KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED")
        raise


def find_runs(run: MlflowRun, tag: str, values: Iterable[str]) -> dict[str, str]:
    """Run ids in the same MLflow experiment whose tag `tag` has one of `values` (value -> id)."""
    wanted = set(values)
    found: dict[str, str] = {}
    try:
        runs = run.client.search_runs([run.experiment_id], max_results=1000)
    except Exception as err:
        log.warning("MLflow: searching runs failed (%s)", _first_line(err))
        return found
    for other in runs:
        value = other.data.tags.get(tag)
        if value in wanted and value not in found:
            found[value] = other.info.run_id
    return found


def _read_run_id(path: Path) -> str | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    run_id = data.get("runId") if isinstance(data, dict) else None
    return str(run_id) if run_id else None


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:300] if text else type(err).__name__
