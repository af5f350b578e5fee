"""How a workload tells the world how far it is and what it produced.

Three channels, chosen from the environment by `reporter_from_env`:
- in a pod, a merge patch of the resource's `status.progress` / `status.metrics` through the
  Kubernetes API (the workload's service account may patch only the status subresource);
- under the local runner, a JSON status file that `llmft run` and `llmft report` read;
- always, `result.json` in the output directory and a compact copy as the container's
  termination message, which the operator reads when the status patch could not be made.
Every report is also one structured log line on stderr.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Protocol

from llmft.api.kinds import KINDS
from llmft.api.layout import RESULT
from llmft.api.status import merge_patch, now_rfc3339
from llmft.jsonfiles import write_json

log = logging.getLogger("llmft.report")

TERMINATION_LOG = "/dev/termination-log"
TERMINATION_LIMIT = 4000  # the kubelet keeps at most 4096 bytes


class StatusSink(Protocol):
    """Somewhere a status patch can be written."""

    def patch(self, status: dict[str, Any]) -> None: ...


class FileSink:
    """Merges status patches into a JSON file (the local runner's state directory)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def patch(self, status: dict[str, Any]) -> None:
        current: dict[str, Any] = {}
        if self.path.exists():
            current = json.loads(self.path.read_text() or "{}")
        write_json(self.path, merge_patch(current, status), sort_keys=True)


class KubernetesSink:
    """Patches the resource's status subresource with the pod's service-account token."""

    def __init__(self, kind: str, name: str, namespace: str) -> None:
        from kubernetes import client, config  # imported here: local runs need no cluster

        config.load_incluster_config()
        self.api = client.CustomObjectsApi()
        self.plural = KINDS[kind].plural
        self.name, self.namespace = name, namespace

    def patch(self, status: dict[str, Any]) -> None:
        self.api.patch_namespaced_custom_object_status(
            "llmft.io", "v1alpha1", self.namespace, self.plural, self.name, {"status": status}
        )


class Reporter:
    """Rate-limited progress reports and one final result, to every configured channel."""

    def __init__(
        self,
        sink: StatusSink | None,
        output_dir: Path | None = None,
        min_interval: float = 5.0,
        termination_log: str = TERMINATION_LOG,
    ) -> None:
        self.sink = sink
        self.output_dir = output_dir
        self.min_interval = min_interval
        self.termination_log = termination_log
        self._last = 0.0
        self.last_progress: dict[str, Any] = {}
        # Other status fields a workload keeps current beside progress (a trainer's
        # trainerStatus), sent with every progress report and with the result.
        self.last_fields: dict[str, Any] = {}

    def _send(self, status: dict[str, Any]) -> None:
        if self.sink is None:
            return
        try:
            self.sink.patch(status)
        except Exception as err:  # a report must never kill the workload
            log.warning("status report failed: %s", err)

    def progress(
        self, force: bool = False, status: dict[str, Any] | None = None, **fields: Any
    ) -> None:
        """Record progress (step, total, loss, ...); sent at most every `min_interval` seconds.

        `status` holds other top-level status fields to keep current (e.g. trainerStatus).
        """
        if status:
            self.last_fields.update(status)
        fields = {k: v for k, v in fields.items() if v is not None}
        step, total = fields.get("step"), fields.get("total")
        if step is not None and total:
            fields.setdefault("percent", round(100.0 * step / total, 1))
        fields["updatedAt"] = now_rfc3339()
        self.last_progress.update(fields)
        print(json.dumps({"event": "progress", **fields}), file=sys.stderr, flush=True)
        if force or time.monotonic() - self._last >= self.min_interval:
            self._last = time.monotonic()
            self._send({**self.last_fields, "progress": dict(self.last_progress)})

    def record(self, **fields: Any) -> None:
        """Status fields the workload owns besides progress and results (e.g. `model`), now."""
        print(json.dumps({"event": "status", **fields}), file=sys.stderr, flush=True)
        self._send(dict(fields))

    def result(
        self,
        metrics: dict[str, Any],
        outputs: dict[str, Any] | None = None,
        status: dict[str, Any] | None = None,
    ) -> None:
        """Record the final metrics and output locations on every channel.

        `status` holds further fields of the kind's status model (an Evaluation's `summary`);
        they go to the status only, not to result.json or the termination message.
        """
        outputs = outputs or {}
        payload = {"metrics": metrics, "outputs": outputs}
        print(json.dumps({"event": "result", **payload}), file=sys.stderr, flush=True)
        if self.output_dir is not None:
            write_json(self.output_dir / RESULT, payload, sort_keys=True)
        self._write_termination_message(payload)
        patch: dict[str, Any] = {
            **self.last_fields,
            **(status or {}),
            "metrics": metrics,
            "outputs": outputs,
        }
        if self.last_progress:
            patch["progress"] = dict(self.last_progress)
        self._send(patch)

    def failure(self, message: str) -> None:
        """Record that the workload failed: its status message and the termination message."""
        self.progress(force=True, message=f"failed: {message}"[:1000])
        self._write_termination_message({"error": message[:3500], "metrics": {}})

    def stopped(self, message: str) -> None:
        """Record that the workload stopped on a signal (what it kept is in `message`)."""
        self.progress(force=True, message=message[:1000])
        self._write_termination_message({"error": message[:3500], "metrics": {}})

    def _write_termination_message(self, payload: dict[str, Any]) -> None:
        if not os.path.exists(self.termination_log):
            return
        text = json.dumps(payload, separators=(",", ":"), sort_keys=True)
        if len(text) > TERMINATION_LIMIT:
            text = _fit_metrics(payload["metrics"], TERMINATION_LIMIT)
        try:
            Path(self.termination_log).write_text(text)
        except OSError as err:
            log.warning("could not write termination message: %s", err)


def _fit_metrics(metrics: dict[str, Any], limit: int) -> str:
    """`{"metrics": ...}` as JSON of at most `limit` characters, still valid JSON: the detail
    keys (`<arm>.<metric>.<stat>`, two dots) go first, then keys from the end."""
    kept = dict(metrics)
    detail = [k for k in kept if k.count(".") >= 2]
    while True:
        text = json.dumps({"metrics": kept}, separators=(",", ":"))
        if len(text) <= limit or not kept:
            return text
        kept.pop(detail.pop() if detail else next(reversed(kept)))


def reporter_from_env(kind: str, name: str, namespace: str, output_dir: Path | None) -> Reporter:
    """The reporter for where this workload runs (local status file, pod, or logs only)."""
    status_file = os.environ.get("LLMFT_STATUS_FILE")
    if status_file:
        return Reporter(FileSink(Path(status_file)), output_dir, min_interval=1.0)
    in_pod = bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
    if in_pod and os.environ.get("LLMFT_REPORT_STATUS", "1") == "1":
        try:
            sink = KubernetesSink(kind, name, namespace)
        except Exception as err:
            log.warning("no Kubernetes status channel (%s); reporting to logs only", err)
            return Reporter(None, output_dir)
        interval = float(os.environ.get("LLMFT_REPORT_INTERVAL", "10"))
        return Reporter(sink, output_dir, min_interval=interval)
    return Reporter(None, output_dir)
