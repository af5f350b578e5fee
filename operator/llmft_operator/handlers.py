"""The kopf handlers: what triggers a reconcile of DatasetGeneration, FineTuneJob and Evaluation.

A resource is reconciled when it is created, when its spec changes, when the operator starts
(resume), when its Job changes, and on a slow tick while its pod has not started (refresh.py;
not a kopf timer, which would put a finalizer on it). Waiting for inputs is a
kopf.TemporaryError, so kopf retries the creation handler until the inputs are ready. No handler
needs a finalizer, so deleting a resource never waits for the operator.
Importing this module registers the handlers: `kopf run -m llmft_operator.handlers` works as
well as `python -m llmft_operator`.
"""

from __future__ import annotations

import contextvars
import json
import logging
from collections.abc import Callable
from typing import Any, cast

import kopf

from llmft.api.common import GROUP, VERSION
from llmft.api.kinds import EXPERIMENT, KINDS
from llmft.experiments.children import LABEL_EXPERIMENT
from llmft_operator import metrics
from llmft_operator.controller import Outcome, Reconciler
from llmft_operator.experiments import ExperimentController
from llmft_operator.kube import Kube, load_api_client
from llmft_operator.naming import LABEL_KIND, LABEL_NAME, MANAGED_BY
from llmft_operator.refresh import Refresher
from llmft_operator.settings import OperatorSettings, reconcile_interval
from llmft_operator.status import Transition

log = logging.getLogger("llmft.operator")

ANNOTATION_PREFIX = f"kopf.{GROUP}"
INTERVAL = reconcile_interval()
EXPERIMENTS = EXPERIMENT.plural
# A resource waiting long for its inputs (an evaluation behind a day-long fine-tune) is checked
# at most every 6 intervals, so thousands of waiting resources stay cheap.
MAX_BACKOFF_FACTOR = 6


def _post_event(body: dict[str, Any], transition: Transition) -> None:
    kopf.event(
        cast(kopf.Body, body),
        type=transition.type,
        reason=transition.reason,
        message=transition.message,
    )


def _adopt(children: list[dict[str, Any]], owner: dict[str, Any]) -> None:
    kopf.adopt(children, owner=cast(kopf.Body, owner))


class MemoryDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """kopf's last-handled state of each object (what a spec change is detected against), kept
    in the operator's memory instead of patched onto the object: that patch would be one more
    write, and one more watch event, for every resource created.

    After a restart nothing is remembered, so kopf sees each object as new and runs its creation
    handler, which reconciles it as a resume would (every reconcile is idempotent). An object an
    older operator annotated is read from that annotation.
    """

    def __init__(self, prefix: str, key: str) -> None:
        super().__init__(prefix=prefix, key=key)
        self._essences: dict[str, str] = {}  # uid -> essence as JSON (kopf's event loop only)

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        encoded = self._essences.get(body.metadata.uid or "")
        if encoded is not None:
            return cast(kopf.BodyEssence, json.loads(encoded))
        return super().fetch(body=body)

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        if body.metadata.uid:
            self._essences[body.metadata.uid] = json.dumps(essence, separators=(",", ":"))

    def forget(self, uid: str | None) -> None:
        self._essences.pop(uid or "", None)

    def __len__(self) -> int:
        return len(self._essences)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    """Read the operator settings once; keep kopf's bookkeeping in annotations, not in status."""
    op_settings = OperatorSettings.from_env()
    # The status schema is strict (no status.kopf), so kopf's progress lives in annotations.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=ANNOTATION_PREFIX
    )
    memo.diffbase = MemoryDiffBaseStorage(ANNOTATION_PREFIX, "last-handled-configuration")
    settings.persistence.diffbase_storage = memo.diffbase
    # No handler needs a finalizer; kopf removes this one from objects an older operator (whose
    # timer needed it) left it on.
    settings.persistence.finalizer = f"{GROUP}/operator"
    if memo.get("namespaced"):
        # Watching named namespaces needs no listing of all namespaces (a cluster-wide read the
        # chart does not grant); the CRDs are served as found at startup (Helm installs them
        # first).
        settings.scanning.disabled = True
    # kopf's own progress messages ("Handler 'reconcile' succeeded", "Creation is processed")
    # would cost two Events per resource; the operator posts an Event for each transition of
    # its own (kopf.event), and kopf's warnings and errors are still posted.
    settings.posting.level = logging.WARNING
    # Reconciles mostly wait on the API server; more threads overlap those waits.
    settings.execution.max_workers = 32
    settings.networking.request_timeout = 60
    # Stop within a pod's default grace period even with thousands of resources in flight;
    # nothing is lost by a hard exit (every reconcile is idempotent).
    settings.process.ultimate_exiting_timeout = 20
    reconciler = Reconciler(
        Kube(load_api_client()), op_settings, _post_event, _adopt, retry_interval=INTERVAL
    )
    memo.reconciler = reconciler
    memo.experiments = ExperimentController(
        reconciler.kube,
        _adopt,
        reconciler.write_status,
        lambda kind, namespace, name: reconciler.reconcile(kind, namespace, name, "stop"),
    )
    handler_context = memo.handler_context = HandlerContext()
    memo.refresher = Refresher(
        lambda kind, namespace, name: handler_context.run(
            reconciler.reconcile, kind, namespace, name, "timer"
        ),
        interval=3 * INTERVAL,
        min_age=3 * INTERVAL,
    )
    memo.refresher.start()
    metrics.serve(op_settings.metrics_port)
    log.info(
        "llmft operator settings: gpu=%s=%s pvc=%s mount=%s sa=%s queue=%s",
        op_settings.gpu_product_label,
        op_settings.gpu_product,
        op_settings.artifact_pvc,
        op_settings.artifact_mount,
        op_settings.workload_service_account,
        op_settings.kueue_queue or "-",
    )


class HandlerContext:
    """The context kopf runs handlers in (its settings, its queue of Events to post), kept for
    the operator's own threads: kopf.event fails outside it. A handler captures it; kopf gives
    each object a shallow copy of the memo, so the memo holds this box, not the context."""

    def __init__(self) -> None:
        self.context: contextvars.Context | None = None

    def capture(self) -> None:
        if self.context is None:
            self.context = contextvars.copy_context()

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self.context is None:
            return fn(*args)
        return self.context.copy().run(fn, *args)


def retry_delay(base: float, retry: int) -> float:
    """Seconds before checking the inputs again: base, 2x, 4x, then 6x base for long waits."""
    return base * min(2 ** min(retry, 3), MAX_BACKOFF_FACTOR)


def _raise_for(outcome: Outcome, retry: int) -> None:
    if outcome.permanent:
        raise kopf.PermanentError(outcome.message)
    if outcome.retry_after:
        raise kopf.TemporaryError(outcome.message, delay=retry_delay(outcome.retry_after, retry))


def _reconcile(
    trigger: str,
    resource: kopf.Resource,
    body: kopf.Body,
    name: str,
    namespace: str | None,
    memo: Any,
    retry: int,
) -> None:
    reconciler: Reconciler = memo.reconciler
    if trigger == "create" and body.get("status"):
        trigger = "resume"  # found at startup (kopf's memory of it died with the last process)
    # kopf hands over the object of the newest watch event: no need to read it again.
    outcome = reconciler.reconcile(
        KINDS.by_plural(resource.plural).kind, namespace or "", name, trigger, body=dict(body)
    )
    _raise_for(outcome, retry)


def on_create(
    resource: kopf.Resource,
    body: kopf.Body,
    name: str,
    namespace: str | None,
    memo: Any,
    retry: int,
    **_: Any,
) -> None:
    _reconcile("create", resource, body, name, namespace, memo, retry)


def on_resume(
    resource: kopf.Resource,
    body: kopf.Body,
    name: str,
    namespace: str | None,
    memo: Any,
    retry: int,
    **_: Any,
) -> None:
    _reconcile("resume", resource, body, name, namespace, memo, retry)


def on_spec_change(
    resource: kopf.Resource,
    body: kopf.Body,
    name: str,
    namespace: str | None,
    memo: Any,
    retry: int,
    **_: Any,
) -> None:
    _reconcile("update", resource, body, name, namespace, memo, retry)


def on_resource_event(
    resource: kopf.Resource,
    body: kopf.Body,
    name: str,
    namespace: str | None,
    status: kopf.Status,
    type: str | None,
    memo: Any,
    **_: Any,
) -> None:
    kind = KINDS.by_plural(resource.plural).kind
    handler_context: HandlerContext | None = getattr(memo, "handler_context", None)
    if handler_context is not None:
        handler_context.capture()  # for the refresher's thread
    # The newest body of each resource, for its Job's events (they then need no GET).
    reconciler: Reconciler | None = getattr(memo, "reconciler", None)
    if reconciler is not None:
        if type == "DELETED":
            reconciler.bodies.forget(kind, namespace or "", name)
        else:
            reconciler.bodies.remember(kind, dict(body))
    _forget_if_deleted(body, type, memo)
    # Once the pod runs, every change shows on the Job, whose events drive the status; until then
    # the refresher re-reads the resource (image pulls and scheduling show on the pod only).
    refresher: Refresher | None = getattr(memo, "refresher", None)
    if refresher is not None:
        key = (kind, namespace or "", name)
        refresher.observe(key, dict(status), deleted=type == "DELETED")


def _forget_if_deleted(body: kopf.Body, type: str | None, memo: Any) -> None:
    diffbase: MemoryDiffBaseStorage | None = getattr(memo, "diffbase", None)
    if type == "DELETED" and diffbase is not None:
        diffbase.forget(body.metadata.uid)


@kopf.on.event(GROUP, VERSION, EXPERIMENTS, id="forget-deleted")
def on_experiment_event(body: kopf.Body, type: str | None, memo: Any, **_: Any) -> None:
    """An Experiment was deleted: drop kopf's memory of it."""
    _forget_if_deleted(body, type, memo)


@kopf.on.cleanup()
def stop_refresher(memo: Any, **_: Any) -> None:
    """Stop the refresh thread when the operator exits."""
    refresher: Refresher | None = getattr(memo, "refresher", None)
    if refresher is not None:
        refresher.stop()


for _plural in (entry.plural for entry in KINDS.with_workload()):
    kopf.on.create(GROUP, VERSION, _plural, id="reconcile")(on_create)
    kopf.on.resume(GROUP, VERSION, _plural, id="reconcile-resume")(on_resume)
    kopf.on.update(GROUP, VERSION, _plural, field="spec", id="reconcile-spec")(on_spec_change)
    kopf.on.event(GROUP, VERSION, _plural, id="track-pending")(on_resource_event)


@kopf.on.create(GROUP, VERSION, EXPERIMENTS, id="experiment")
@kopf.on.resume(GROUP, VERSION, EXPERIMENTS, id="experiment-resume")
@kopf.on.update(GROUP, VERSION, EXPERIMENTS, field="spec", id="experiment-spec")
def on_experiment(name: str, namespace: str | None, memo: Any, **_: Any) -> None:
    """An Experiment was created, changed, or found at startup: take its next step."""
    controller: ExperimentController = memo.experiments
    error = controller.reconcile(namespace or "", name)
    if error:
        raise kopf.PermanentError(error)


def on_experiment_child(
    labels: kopf.Labels, namespace: str | None, type: str | None, memo: Any, **_: Any
) -> None:
    """A trial or the Evaluation of an Experiment changed: the Experiment takes its next step."""
    controller: ExperimentController | None = getattr(memo, "experiments", None)
    parent = labels.get(LABEL_EXPERIMENT)
    if controller is None or not parent or not namespace:
        return
    try:
        controller.reconcile(namespace, parent)
    except Exception:  # the next child event tries again
        log.exception("reconciling Experiment %s/%s after a child event failed", namespace, parent)


for _child in EXPERIMENT.creates:  # its trials and its Evaluation
    kopf.on.event(
        GROUP,
        VERSION,
        KINDS[_child].plural,
        labels={LABEL_EXPERIMENT: kopf.PRESENT},
        id="experiment-child",
    )(on_experiment_child)


@kopf.on.event("batch", "v1", "jobs", labels={"app.kubernetes.io/managed-by": MANAGED_BY})
def on_job_event(body: kopf.Body, type: str | None, memo: Any, **_: Any) -> None:
    """A workload Job changed (pod started, finished, failed): mirror it on its resource."""
    labels = body.metadata.labels
    kind, name, namespace = labels.get(LABEL_KIND), labels.get(LABEL_NAME), body.metadata.namespace
    if not isinstance(kind, str) or kind not in KINDS or not KINDS[kind].workload:
        return
    if not name or not namespace:
        return
    reconciler: Reconciler = memo.reconciler
    try:
        job = None if type == "DELETED" else dict(body)
        reconciler.reconcile(kind, namespace, name, "job", job=job)
    except Exception:  # the next Job event or the refresher tries again
        log.exception("reconciling %s %s/%s after a Job event failed", kind, namespace, name)


@kopf.on.probe(id="resources")
def resources_seen(memo: Any, **_: Any) -> int:
    """For the liveness endpoint: how many llmft resources this operator is tracking."""
    reconciler: Reconciler | None = getattr(memo, "reconciler", None)
    return reconciler.phases.count() if reconciler else 0
