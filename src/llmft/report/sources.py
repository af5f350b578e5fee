"""Where a report's numbers come from: the local runner's state directory, or a cluster."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmft.api.common import GROUP, VERSION, Phase
from llmft.api.kinds import EVALUATION, FINE_TUNE_JOB
from llmft.api.layout import EVAL_SUMMARY, TRAIN_LOG
from llmft.report.charts import LossCurve, loss_curve
from llmft.report.summary import (
    EvaluationSummary,
    SummaryError,
    load_summary,
    model_name,
    summary_from_status,
)
from llmft.runner.state import StateDir


class ReportSourceError(RuntimeError):
    """Nothing to report, or the source could not be read; the message says what to do."""


@dataclass
class ReportInput:
    """One evaluation's comparison, the loss curves of its fine-tune jobs, and remarks."""

    summary: EvaluationSummary
    curves: list[LossCurve] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def read_log_history(path: Path) -> list[dict[str, Any]]:
    """The Trainer's log events, one JSON object per line; unreadable lines are skipped."""
    events: list[dict[str, Any]] = []
    for line in path.read_text().splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events


def local_inputs(state: StateDir, evaluation: str | None = None) -> list[ReportInput]:
    """Every (or the named) Evaluation in a state directory, with its jobs' loss curves."""
    names = [k.partition("/")[2] for k in state.keys("Evaluation")]
    if evaluation is not None:
        if evaluation not in names:
            known = ", ".join(names) or "none"
            raise ReportSourceError(
                f"Evaluation {evaluation!r} is not in {state.root} (evaluations there: {known})"
            )
        names = [evaluation]
    if not names:
        raise ReportSourceError(
            f"no Evaluation has run in {state.root}; run `llmft run -f <manifests>` first "
            "(or pass --state-dir)"
        )
    job_dirs = _finetune_dirs(state)
    inputs: list[ReportInput] = []
    for name in names:
        key = f"Evaluation/{name}"
        status = state.read_status(key) or {}
        spec = (state.read_spec(key) or {}).get("spec") or {}
        out = Path((spec.get("output") or {}).get("path") or "")
        notes: list[str] = []
        phase = status.get("phase")
        try:
            summary = load_summary(out / EVAL_SUMMARY, name)
        except SummaryError as err:
            if evaluation is not None:
                raise ReportSourceError(f"{key} (phase {phase or 'unknown'}): {err}") from None
            continue  # another evaluation may still be running; report the ones that finished
        if phase != Phase.SUCCEEDED.value:
            notes.append(f"{key} is {phase or 'unknown'}: showing the summary it last wrote")
        curves: list[LossCurve] = []
        for arm in spec.get("arms") or []:
            adapter = arm.get("adapterPath")
            if not adapter:
                continue
            log = Path(adapter).parent / TRAIN_LOG
            label = job_dirs.get(str(Path(adapter).parent), Path(adapter).parent.name)
            if log.exists() and label not in [c.label for c in curves]:
                curves.append(loss_curve(label, read_log_history(log)))
        inputs.append(ReportInput(summary, curves, notes))
    if not inputs:
        raise ReportSourceError(
            f"no Evaluation in {state.root} has written {EVAL_SUMMARY} yet; "
            "wait for `llmft run` to finish"
        )
    return inputs


def _finetune_dirs(state: StateDir) -> dict[str, str]:
    """Output directory -> FineTuneJob name, to label loss curves by job."""
    dirs: dict[str, str] = {}
    for key in state.keys("FineTuneJob"):
        spec = (state.read_spec(key) or {}).get("spec") or {}
        path = (spec.get("output") or {}).get("path")
        if path:
            dirs[str(Path(path))] = key.partition("/")[2]
    return dirs


def cluster_inputs(
    namespace: str | None = None,
    kubeconfig: str | None = None,
    evaluation: str | None = None,
) -> list[ReportInput]:
    """Evaluations read through the Kubernetes API (their status and spec)."""
    from kubernetes import client, config  # only the --cluster path needs a client
    from kubernetes.client.exceptions import ApiException
    from kubernetes.config.config_exception import ConfigException

    try:
        config.load_kube_config(config_file=kubeconfig)
        if namespace is None:
            _, active = config.list_kube_config_contexts(config_file=kubeconfig)
            namespace = (active or {}).get("context", {}).get("namespace") or "default"
    except (ConfigException, FileNotFoundError) as err:
        raise ReportSourceError(f"cannot load the kubeconfig: {err}") from None
    api = client.CustomObjectsApi()
    plural = EVALUATION.plural
    try:
        if evaluation is not None:
            objects = [
                api.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, evaluation)
            ]
        else:
            listed = api.list_namespaced_custom_object(GROUP, VERSION, namespace, plural)
            objects = listed.get("items", [])
    except ApiException as err:
        what = f"Evaluation {evaluation!r}" if evaluation else "Evaluations"
        raise ReportSourceError(
            f"reading {what} in namespace {namespace}: {err.status} {err.reason}"
        ) from None
    except Exception as err:  # connection refused, TLS, DNS: say where we tried
        raise ReportSourceError(f"cannot reach the cluster: {err}") from None
    if not objects:
        raise ReportSourceError(f"no Evaluations in namespace {namespace}")
    inputs: list[ReportInput] = []
    for obj in objects:
        name = obj["metadata"]["name"]
        status = obj.get("status") or {}
        spec = obj.get("spec") or {}
        try:
            summary = summary_from_status(name, status, spec, _job_models(api, namespace, spec))
        except SummaryError as err:
            if evaluation is not None:
                raise ReportSourceError(str(err)) from None
            continue
        notes = []
        if status.get("phase") != Phase.SUCCEEDED.value:
            notes.append(f"Evaluation/{name} is {status.get('phase', 'unknown')}")
        notes.append(
            "Loss curves are drawn from the FineTuneJobs' log_history.jsonl on the artefact "
            "volume, which a cluster report cannot read; run the report locally to see them."
        )
        inputs.append(ReportInput(summary, [], notes))
    if not inputs:
        raise ReportSourceError(f"no Evaluation in namespace {namespace} has metrics yet")
    return inputs


def _job_models(api: Any, namespace: str, spec: dict[str, Any]) -> dict[str, str]:
    """FineTuneJob name -> its base model, for arms that name only the job."""
    from kubernetes.client.exceptions import ApiException

    models: dict[str, str] = {}
    for arm in spec.get("arms") or []:
        job = arm.get("fineTuneJobRef")
        if not job or job in models or arm.get("baseModel"):
            continue
        try:
            obj = api.get_namespaced_custom_object(
                GROUP, VERSION, namespace, FINE_TUNE_JOB.plural, job
            )
        except ApiException:
            continue  # deleted since: the table says "(from <job>)" instead
        base = (obj.get("spec") or {}).get("baseModel")
        if base:
            models[job] = model_name(base)
    return models
