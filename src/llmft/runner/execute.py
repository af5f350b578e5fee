"""Run the plan: each workload as a subprocess, in order, writing status as the operator would.

The runner writes `phase`, `conditions`, times and bookkeeping around each run; while the
workload runs, only the workload writes the status file (its progress, metrics and outputs,
through LLMFT_STATUS_FILE), and the runner only reads it to draw progress. So there is never
more than one writer at a time.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from llmft.api.common import ENV_SERVICE_WAIT, Condition, Phase
from llmft.api.kinds import KINDS
from llmft.api.status import (
    COMPLETE,
    DEGRADED,
    FAILED,
    INPUTS_READY,
    degraded_condition,
    model_family_condition,
    now_rfc3339,
    read_status,
    set_condition,
)
from llmft.runner.devices import Placement, local_gpus, place, thread_env
from llmft.runner.display import RunDisplay
from llmft.runner.plan import Plan, Step
from llmft.runner.results import result_notes
from llmft.runner.state import StateDir, inside

# After Ctrl-C the workload gets SIGINT and this long to save and exit before SIGTERM/SIGKILL.
INTERRUPT_GRACE_SECONDS = 30.0


class WorkloadMissing(RuntimeError):
    """The workload package for a kind is not importable here."""


@dataclass
class RunResult:
    """What happened to each step of a plan."""

    phases: dict[str, str] = field(default_factory=dict)
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return not self.interrupted and all(
            p == Phase.SUCCEEDED.value for p in self.phases.values()
        )


def _conditions(
    current: Sequence[Condition], *changes: tuple[str, bool, str, str]
) -> list[dict[str, Any]]:
    """`current` with each (type, status, reason, message) set, as status JSON."""
    conds = list(current)
    now = now_rfc3339()
    for type_, ok, reason, message in changes:
        conds = set_condition(conds, type_, ok, reason, message, None, now)
    return [c.to_wire() for c in conds]


def workload_module(kind: str) -> str:
    """The entrypoint module of a kind's workload (the one its image runs)."""
    return KINDS.workload(kind).module


def workload_command(kind: str, spec_file: Path) -> list[str]:
    """The same entrypoint the operator's Job runs, with this interpreter."""
    return [sys.executable, "-m", workload_module(kind), "--spec", str(spec_file)]


def check_workloads(plan: Plan) -> None:
    """Fail before running anything when a needed workload is not installed."""
    for step in plan.steps:
        if not step.decision.run:
            continue
        module = workload_module(step.resource.kind)
        if importlib.util.find_spec(module) is None:
            raise WorkloadMissing(
                f"{step.key} needs the {module} workload, which is not installed here "
                f"(pip install 'llmft[{KINDS.workload(step.resource.kind).name}]')"
            )


# Asked while a workload runs, with its latest status: a reason and a message to stop it, or
# None to let it run (an Experiment's median rule).
StopCheck = Callable[[dict[str, Any]], tuple[str, str] | None]


def execute_plan(
    plan: Plan,
    state: StateDir,
    display: RunDisplay,
    verbose: bool = False,
    stop_check: StopCheck | None = None,
) -> RunResult:
    """Run every step that needs it; a failure blocks only what depends on it."""
    result = RunResult()
    gpus = local_gpus()
    failed: set[str] = set()
    for step in plan.steps:
        if not step.decision.run:
            result.phases[step.key] = Phase.SUCCEEDED.value
            continue
        blocked = [k for k in step.inputs if k in failed]
        if blocked:
            _write_blocked(state, step, blocked[0])
            display.note(f"[yellow]-[/yellow] {step.key} not run: its input {blocked[0]} failed")
            result.phases[step.key] = Phase.WAITING.value
            failed.add(step.key)
            continue
        placement = place(step.resource.spec.resources.gpu_count, gpus)
        try:
            phase = run_step(step, state, display, placement, verbose, stop_check=stop_check)
        except KeyboardInterrupt:
            result.phases[step.key] = Phase.FAILED.value
            result.interrupted = True
            display.note(
                f"[yellow]Interrupted.[/yellow] Run the same `llmft run` again to resume "
                f"{step.key} from its last checkpoint; finished resources are kept."
            )
            return result
        result.phases[step.key] = phase
        if phase != Phase.SUCCEEDED.value:
            failed.add(step.key)
    return result


def begin_run(state: StateDir, step: Step, device: str) -> dict[str, Any]:
    """Write the resolved spec and the Running status of a new attempt (run id, hash, inputs)."""
    state.write_spec(step.key, step.manifest)
    previous = state.read_status(step.key) or {}
    status = {
        "phase": Phase.RUNNING.value,
        "runId": uuid.uuid4().hex[:12],
        "specHash": step.spec_hash,
        # The run ids of the inputs this attempt reads: a later rerun of one makes this stale.
        "inputs": {k: (state.read_status(k) or {}).get("runId") for k in step.inputs},
        "startTime": now_rfc3339(),
        "conditions": _conditions(
            [],
            (INPUTS_READY, True, "InputsSucceeded", "every input has succeeded"),
            (COMPLETE, False, "Running", f"running on {device}"),
        ),
        # A resumed run starts from where the last one stopped; keep that on show.
        "progress": {} if step.decision.fresh else _resumable(previous.get("progress")),
        "metrics": {},
        "outputs": {},
        "runner": {
            "mode": "local",
            "device": device,
            "specFile": str(state.spec_file(step.key)),
            "logFile": str(state.log_file(step.key)),
            "outputDir": str(step.output_dir),
        },
    }
    state.write_status(step.key, status)
    return status


def _write_blocked(state: StateDir, step: Step, input_key: str) -> None:
    state.write_status(
        step.key,
        {
            "phase": Phase.WAITING.value,
            "conditions": _conditions(
                [], (INPUTS_READY, False, "InputFailed", f"{input_key} did not succeed")
            ),
        },
    )


def run_step(
    step: Step,
    state: StateDir,
    display: RunDisplay,
    placement: Placement,
    verbose: bool = False,
    poll_seconds: float = 0.5,
    stop_check: StopCheck | None = None,
) -> str:
    """Run one workload to the end; returns its phase. Ctrl-C stops it and re-raises;
    `stop_check` may stop it early (it then fails with the reason stop_check gives)."""
    key = step.key
    if not inside(state.artifacts_root, step.output_dir):
        # Checked again here, just before anything is removed: the plan may be minutes old.
        message = (
            f"spec.output.path: {step.output_dir} resolves to {step.output_dir.resolve()}, "
            f"outside the artefact root {state.artifacts_root}; nothing was written or removed"
        )
        state.update_status(key, {"phase": Phase.FAILED.value, "message": message})
        finish_run(state, key, Phase.FAILED, "OutputOutsideArtifactRoot", message)
        display.finished(step, Phase.FAILED.value, message, 0.0)
        return Phase.FAILED.value
    if step.decision.fresh and step.output_dir.exists():
        shutil.rmtree(step.output_dir)
    step.output_dir.mkdir(parents=True, exist_ok=True)
    log_path = state.log_file(key)
    log_path.parent.mkdir(parents=True, exist_ok=True)

    begin_run(state, step, placement.device)
    env = {
        **os.environ,
        **thread_env(step.resource.spec.resources.cpu),
        **placement.env,
        "LLMFT_STATUS_FILE": str(state.status_file(key)),
        "LLMFT_KIND": step.resource.kind,
        "LLMFT_NAME": step.resource.metadata.name,
        "LLMFT_NAMESPACE": step.resource.metadata.namespace,
        "PYTHONUNBUFFERED": "1",
    }
    resources = step.resource.spec.resources
    if "service_wait_seconds" in resources.model_fields_set or ENV_SERVICE_WAIT not in env:
        env[ENV_SERVICE_WAIT] = str(resources.service_wait_seconds)  # the manifest's wins
    if placement.note:
        display.note(f"  [yellow]note[/yellow]: {key} {placement.note}")
    display.started(step, placement.device)
    started = time.monotonic()
    with open(log_path, "a") as log:
        log.write(f"\n===== {now_rfc3339()} {key}: {step.decision.reason}\n")
        log.flush()
        # A session of its own: the terminal's Ctrl-C reaches only the runner, which then
        # sends the workload exactly one SIGINT and waits for it to save its checkpoint.
        proc = subprocess.Popen(
            workload_command(step.resource.kind, state.spec_file(key)),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        assert proc.stdout is not None
        pump = threading.Thread(
            target=_pump, args=(proc.stdout, log, display, step, verbose), daemon=True
        )
        pump.start()
        stopped: tuple[str, str] | None = None
        try:
            while proc.poll() is None:
                time.sleep(poll_seconds)
                current = state.read_status(key) or {}
                display.progress(step, current)
                if stop_check is not None and (stopped := stop_check(current)) is not None:
                    _stop(proc)
                    break
        except KeyboardInterrupt:
            _stop(proc)
            pump.join(timeout=5)
            finish_run(state, key, Phase.FAILED, "Interrupted", "interrupted by the user")
            display.finished(step, "Interrupted", "", time.monotonic() - started)
            raise
        pump.join(timeout=5)

    status = state.read_status(key) or {}
    seconds = time.monotonic() - started
    if stopped is not None:
        reason, message = stopped
        finish_run(state, key, Phase.FAILED, reason, message)
        display.finished(step, reason, message, seconds)
        return Phase.FAILED.value
    if proc.returncode == 0:
        finish_run(state, key, Phase.SUCCEEDED, "Succeeded", "the workload finished")
        display.finished(step, Phase.SUCCEEDED.value, "", seconds)
        for line in result_notes(step, state.read_status(key) or {}):
            display.note(f"  {line}")
        return Phase.SUCCEEDED.value
    message = failure_message(status, log_path, proc.returncode)
    finish_run(state, key, Phase.FAILED, "WorkloadFailed", message)
    display.finished(step, Phase.FAILED.value, message, seconds)
    display.note(f"  log: {log_path}")
    return Phase.FAILED.value


def _resumable(progress: dict[str, Any] | None) -> dict[str, Any]:
    """The last run's progress without its last words (a stale error would mislead)."""
    return {k: v for k, v in (progress or {}).items() if k != "message"}


def _pump(stream: IO[bytes], log: IO[str], display: RunDisplay, step: Step, verbose: bool) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode(errors="replace")
        log.write(line)
        log.flush()
        if verbose:
            display.log_line(step, line)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGINT, then SIGTERM, then SIGKILL, each after a grace period."""
    for sig, grace in (
        (signal.SIGINT, INTERRUPT_GRACE_SECONDS),
        (signal.SIGTERM, 10.0),
        (signal.SIGKILL, 5.0),
    ):
        if proc.poll() is not None:
            return
        try:
            proc.send_signal(sig)
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
        except KeyboardInterrupt:  # a second Ctrl-C: stop waiting politely
            continue


def finish_run(state: StateDir, key: str, phase: Phase, reason: str, message: str) -> None:
    """Write the end of an attempt: phase, completion time and the Complete/Failed conditions."""
    ok = phase == Phase.SUCCEEDED
    raw = state.read_status(key)
    status = read_status(raw)
    kept = [c for c in status.conditions if c.type == INPUTS_READY]
    kept = model_family_condition(kept, raw, None, now_rfc3339())
    changes = [
        (COMPLETE, ok, reason, "" if not ok else message),
        (FAILED, not ok, reason if not ok else "Succeeded", "" if ok else message),
    ]
    degraded = degraded_condition(status.metrics) if ok else None
    if degraded is not None:
        changes.append((DEGRADED, True, *degraded))
    state.update_status(
        key,
        {
            "phase": phase.value,
            "completionTime": now_rfc3339(),
            "conditions": _conditions(kept, *changes),
        },
    )


def failure_message(status: dict[str, Any], log_path: Path, returncode: int) -> str:
    """The workload's own error line if it wrote one, else the end of its log."""
    message = str((status.get("progress") or {}).get("message") or "")
    if message.startswith("failed: "):
        return message.removeprefix("failed: ")
    lines: list[str] = []
    if log_path.exists():
        lines = [ln for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
    for line in reversed(lines):
        if line.startswith("error: "):
            return line.removeprefix("error: ")
    tail = lines[-1] if lines else ""
    return f"exit code {returncode}" + (f": {tail[:300]}" if tail else "")
