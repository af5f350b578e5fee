"""Reconciling one llmft resource: wait for its inputs, create its Job once, mirror it in status.

The same `reconcile` runs for every trigger (the resource changed, its Job changed, a timer, a
restart); it reads the current state, so running it twice is harmless. What to build comes from
the pure modules (resolve, jobs, status); this module only fetches, creates and patches.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes.client.rest import ApiException

from llmft.api.common import Phase
from llmft.api.resolve import ResolveError
from llmft.api.resource import ManifestError, parse_resource
from llmft.api.status import (
    COMPLETE,
    FAILED,
    INPUTS_READY,
    SPEC_OUT_OF_DATE,
    drop_condition,
    find_condition,
    is_noop,
    merge_patch,
    now_rfc3339,
    read_status,
    set_condition,
)
from llmft.experiments.children import ANNOTATION_STOP, ANNOTATION_STOP_REASON
from llmft_operator import metrics
from llmft_operator.jobs import GENERATION_ANNOTATION, build_spec_configmap, build_workload_job
from llmft_operator.kube import STALE_RETRIES, Kube, StaleObject, owner_uids
from llmft_operator.naming import job_name
from llmft_operator.resolve import (
    SPEC_KEY,
    Fetched,
    Needs,
    Problem,
    find_problems,
    needs_of,
    output_location,
    plan_workload,
    upstream_spec_configmaps,
)
from llmft_operator.settings import OperatorSettings
from llmft_operator.status import (
    CONTAINER_CONFIG_REASONS,
    FINISHED,
    Observation,
    Transition,
    inputs_gone,
    invalid_spec_status,
    job_status,
    observe_job,
    spec_change_message,
    transitions,
    waiting_status,
)

log = logging.getLogger("llmft.operator")

EventPoster = Callable[[dict[str, Any], Transition], None]
Adopter = Callable[[list[dict[str, Any]], dict[str, Any]], None]


Key = tuple[str, str, str]  # (kind, namespace, name)


def _resource_version(body: dict[str, Any]) -> int | None:
    try:
        return int(body["metadata"]["resourceVersion"])
    except (KeyError, TypeError, ValueError):
        return None


class Bodies:
    """The newest body seen of each resource: from its watch events and from the operator's own
    status patches (whose answer is the patched object), so a Job event needs no GET of its
    resource. Newer means a higher resourceVersion (etcd's revision); managedFields are dropped.
    """

    def __init__(self) -> None:
        self._bodies: dict[Key, dict[str, Any]] = {}
        self._guard = threading.Lock()

    def remember(self, kind: str, body: dict[str, Any]) -> None:
        meta = body.get("metadata") or {}
        if not meta.get("name") or not meta.get("namespace"):
            return
        key = (kind, meta["namespace"], meta["name"])
        slim = {**body, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}
        version = _resource_version(slim)
        with self._guard:
            known = self._bodies.get(key)
            known_version = _resource_version(known) if known is not None else None
            if version is None or known_version is None or version >= known_version:
                self._bodies[key] = slim

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self._guard:
            return self._bodies.get((kind, namespace, name))

    def forget(self, kind: str, namespace: str, name: str) -> None:
        with self._guard:
            self._bodies.pop((kind, namespace, name), None)

    def __len__(self) -> int:
        return len(self._bodies)


@dataclass(frozen=True)
class Outcome:
    """What a reconcile left to do: nothing, retry later (waiting), or never (invalid spec)."""

    retry_after: float | None = None
    permanent: bool = False
    message: str = ""


DONE = Outcome()
# Enough stripes that two of the 32 worker threads rarely wait on each other's resource.
LOCK_STRIPES = 4096
# Create answers that will not change by retrying the same objects (a spec the Job or ConfigMap
# API refuses), and those that may (a quota, a webhook, throttling).
PERMANENT_CREATE_ERRORS = frozenset({400, 404, 413, 422})
TEMPORARY_CREATE_ERRORS = frozenset({403, 429})


class Reconciler:
    """Reconciles resources of the three kinds; one at a time per resource, any number at once."""

    def __init__(
        self,
        kube: Kube,
        settings: OperatorSettings,
        post_event: EventPoster,
        adopt: Adopter,
        retry_interval: float = 10.0,
    ) -> None:
        self.kube = kube
        self.settings = settings
        self.post_event = post_event
        self.adopt = adopt
        self.retry_interval = retry_interval
        self.phases = metrics.PhaseBook()
        self.bodies = Bodies()
        # Striped locks: one resource is reconciled by one thread at a time, in bounded memory.
        self._locks = [threading.Lock() for _ in range(LOCK_STRIPES)]

    def _lock(self, key: tuple[str, str, str]) -> threading.Lock:
        return self._locks[hash(key) % LOCK_STRIPES]

    def reconcile(
        self,
        kind: str,
        namespace: str,
        name: str,
        trigger: str,
        job: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
    ) -> Outcome:
        """Bring the resource's Job and status up to date with what the cluster holds now.

        `job` is the Job as a watch event just delivered it, `body` the resource as its own
        watch event did (each saves reading it again). A Job event or the refresher's tick reads
        the resource from `bodies` (its watch events and this operator's own patches); a stop
        reads it from the API server (its annotation was just written), as does any trigger
        whose resource is not known yet.
        """
        started = time.monotonic()
        outcome_label = "error"
        try:
            with self._lock((kind, namespace, name)):
                if body is None and trigger in ("job", "timer"):
                    body = self.bodies.get(kind, namespace, name)
                if body is None:
                    body = self.kube.get_resource(kind, namespace, name)
                    if body is not None:
                        self.bodies.remember(kind, body)
                else:
                    # A watch event may carry an older body than this operator's last patch
                    # answered with: act on the newest.
                    self.bodies.remember(kind, body)
                    body = self.bodies.get(kind, namespace, name) or body
                for attempt in range(STALE_RETRIES + 1):
                    if body is None or body["metadata"].get("deletionTimestamp"):
                        outcome_label = "gone"
                        self.phases.forget(kind, namespace, name)
                        if body is None:
                            self.bodies.forget(kind, namespace, name)
                        return DONE
                    try:
                        outcome = self._reconcile(kind, body, job, trigger)
                        break
                    except StaleObject:
                        # Someone wrote the status since this body was read (another operator
                        # pod overlapping this one, a workload's progress): read it and decide
                        # again, so a transition another writer already made is not redone.
                        if attempt == STALE_RETRIES:
                            raise
                        body = self.kube.get_resource(kind, namespace, name)
                        if body is not None:
                            self.bodies.remember(kind, body)
            outcome_label = (
                "permanent" if outcome.permanent else "waiting" if outcome.retry_after else "ok"
            )
            return outcome
        finally:
            metrics.RECONCILES.labels(kind, trigger, outcome_label).inc()
            metrics.RECONCILE_SECONDS.labels(kind).observe(time.monotonic() - started)

    # --- the steps

    def _reconcile(
        self, kind: str, body: dict[str, Any], job: dict[str, Any] | None, trigger: str = ""
    ) -> Outcome:
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        status: dict[str, Any] = body.get("status") or {}
        generation = int(meta.get("generation") or 1)
        jname = job_name(kind, name)

        if (job is None or job["metadata"].get("deletionTimestamp")) and status.get("jobName"):
            job = self.kube.get_job(namespace, jname)
        stop = (meta.get("annotations") or {}).get(ANNOTATION_STOP)
        if stop:
            if status.get("phase") not in FINISHED:
                return self._stop(kind, body, job, stop, generation)
            # Stopped (or finished before the stop came): the status is final. A Job event
            # still to come (its pod completed as the stop deleted it) must not rewrite it.
            return DONE
        # Without status.jobName no Job is known: _start's create answers 409 if one exists.
        if job is not None:
            if meta["uid"] not in owner_uids(job):
                return Outcome(
                    retry_after=5,
                    message=f"Job {jname} of an earlier {kind} {name} is still being deleted",
                )
            if status.get("phase") in FINISHED and not _job_finished(job):
                # A watch event older than the status already written: this resource has one
                # Job (its owner uid was checked), and a finished phase never goes back.
                return DONE
            fresh = not job.get("status") and not (job.get("spec") or {}).get("suspend")
            if trigger == "job" and fresh and status.get("jobName") == jname:
                # The Job as just created (the Job controller has not looked at it yet): the
                # status written at its creation says all there is; its first update follows.
                # (A suspended Job may get none until Kueue admits it: it is shown Queued.)
                return DONE
            pods = self.kube.job_pods(namespace, jname)
            refused = None
            if trigger == "timer" and not pods and not (job.get("status") or {}).get("conditions"):
                # Still no pod on the slow tick: the API server may be refusing it, which only
                # an Event says (the Job itself does not change, so no Job event brings it).
                refused = self.kube.failed_create(namespace, job["metadata"].get("uid", ""))
            annotations = job["metadata"].get("annotations") or {}
            job_generation = int(annotations.get(GENERATION_ANNOTATION) or generation)
            observed = observe_job(job, pods, refused)
            if observed.reason in CONTAINER_CONFIG_REASONS:
                # Why the kubelet cannot start it, told as the resource's inputs (a Secret
                # deleted or changed after the Job was created): which Secret, which field.
                observed = inputs_gone(observed, self._secret_problems(body))
            patch = job_status(
                status,
                observed,
                generation=generation,
                job_generation=job_generation,
                job_name=jname,
                artifacts=None if status.get("artifacts") else self._artifacts(body),
                now=now_rfc3339(),
            )
            self._write(kind, body, patch)
            return DONE

        if status.get("jobName"):
            return self._job_gone(kind, body, generation)
        return self._start(kind, body, generation)

    def _stop(
        self,
        kind: str,
        body: dict[str, Any],
        job: dict[str, Any] | None,
        why: str,
        generation: int,
    ) -> Outcome:
        """Stopped on request (the llmft.io/stop annotation; an Experiment's median rule sets
        it): the Job is deleted with its pod, and the resource fails with the given reason."""
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        jname = job_name(kind, name)
        if job is not None and meta["uid"] in owner_uids(job):
            self.kube.delete_job(namespace, jname)
        raw: dict[str, Any] = body.get("status") or {}
        now = now_rfc3339()
        reason = (meta.get("annotations") or {}).get(ANNOTATION_STOP_REASON) or "Stopped"
        obs = Observation(
            Phase.FAILED, reason, why, start_time=raw.get("startTime"), completion_time=now
        )
        patch = job_status(
            raw,
            obs,
            generation=generation,
            job_generation=generation,
            job_name=raw.get("jobName") or jname,
            artifacts=None,
            now=now,
        )
        self._write(kind, body, patch)
        return DONE

    def _job_gone(self, kind: str, body: dict[str, Any], generation: int) -> Outcome:
        """The Job is gone: expired after finishing (keep the status) or deleted mid-run."""
        raw: dict[str, Any] = body.get("status") or {}
        current = read_status(raw)
        now = now_rfc3339()
        conds = current.conditions
        if current.phase in FINISHED:
            last = find_condition(conds, COMPLETE) or find_condition(conds, FAILED)
            ran = (last.observed_generation if last else None) or generation
            if ran != generation:
                reason, message = spec_change_message(current.phase, ran, generation)
                conds = set_condition(
                    conds, SPEC_OUT_OF_DATE, True, reason, message, generation, now
                )
            else:
                conds = drop_condition(conds, SPEC_OUT_OF_DATE)
            wire = [c.to_wire() for c in conds]
            self._write(kind, body, {"observedGeneration": generation, "conditions": wire})
            return DONE
        obs = Observation(
            Phase.FAILED,
            "JobDeleted",
            f"Job {current.job_name} was deleted before it finished; delete and re-create the "
            f"{kind} to run it again",
            start_time=current.start_time,
            completion_time=now,
        )
        inputs = find_condition(conds, INPUTS_READY)
        patch = job_status(
            raw,
            obs,
            generation=generation,
            job_generation=(inputs.observed_generation if inputs else None) or generation,
            job_name=current.job_name or "",
            artifacts=None,
            now=now,
        )
        self._write(kind, body, patch)
        return DONE

    def _start(self, kind: str, body: dict[str, Any], generation: int) -> Outcome:
        """No Job yet: check the inputs, then create the spec ConfigMap and the Job."""
        meta = body["metadata"]
        namespace = meta["namespace"]
        status: dict[str, Any] = body.get("status") or {}
        now = now_rfc3339()
        try:
            res = parse_resource(body)
        except ManifestError as err:
            self._write(kind, body, invalid_spec_status(status, str(err), generation, now))
            return Outcome(permanent=True, message=str(err))

        needs = needs_of(res, self.settings)
        fetched = self._fetch(needs, namespace)
        problems = find_problems(needs, fetched, namespace)
        if problems:
            self._write(kind, body, waiting_status(status, problems, generation, now))
            return Outcome(retry_after=self.retry_interval, message=problems[0].message)

        try:
            plan = plan_workload(res, fetched, self.settings, generation)
        except ResolveError as err:
            self._write(kind, body, invalid_spec_status(status, str(err), generation, now))
            return Outcome(permanent=True, message=str(err))
        config_map = build_spec_configmap(plan)
        job = build_workload_job(plan, self.settings)
        self.adopt([config_map, job], body)
        for child in (config_map, job):
            try:
                created = self.kube.create(child)
            except ApiException as err:
                return self._refused(kind, body, child, err, generation, now)
            if created is not None:
                if child is job:
                    metrics.JOBS_CREATED.labels(kind).inc()
                continue
            # It exists: fine if it is ours (a retry), else an earlier namesake is going away, or
            # someone else's object holds the name.
            child_name = child["metadata"]["name"]
            existing = (
                self.kube.get_job(namespace, child_name)
                if child is job
                else self.kube.get_config_map(namespace, child_name)
            )
            if existing is None:  # deleted in between: create it on the next pass
                return Outcome(retry_after=1, message=f"{child['kind']} {child_name} was deleted")
            if existing["metadata"].get("deletionTimestamp"):
                return Outcome(
                    retry_after=5,
                    message=f"{child['kind']} {child_name} of an earlier {kind} {meta['name']} "
                    "is still being deleted",
                )
            conflict = _foreign_child(child, existing, meta["uid"])
            if conflict:
                problem = Problem("ChildNameConflict", conflict)
                self._write(kind, body, waiting_status(status, [problem], generation, now))
                return Outcome(retry_after=self.retry_interval, message=conflict)
            if child is job:
                # Created before the status said so (an operator stopped in between): follow it.
                return self._reconcile(kind, body, existing)
        jname = job["metadata"]["name"]
        obs = Observation(Phase.PENDING, "JobCreated", f"created Job {jname}")
        patch = job_status(
            status,
            obs,
            generation=generation,
            job_generation=generation,
            job_name=jname,
            artifacts=plan.artifacts.to_wire(),
            now=now,
        )
        self._write(kind, body, patch)
        return DONE

    def _refused(
        self,
        kind: str,
        body: dict[str, Any],
        child: dict[str, Any],
        err: ApiException,
        generation: int,
        now: str,
    ) -> Outcome:
        """The API server refused to create a child: permanent for what the spec asked for."""
        status: dict[str, Any] = body.get("status") or {}
        what = f"the API server refused {child['kind']} {child['metadata']['name']}"
        message = f"{what}: {_api_message(err)}"
        if err.status in PERMANENT_CREATE_ERRORS:
            patch = invalid_spec_status(status, message, generation, now, reason="CreateRefused")
            self._write(kind, body, patch)
            return Outcome(permanent=True, message=message)
        if err.status in TEMPORARY_CREATE_ERRORS:  # a quota, an admission webhook, throttling
            problem = Problem("CreateForbidden", message)
            self._write(kind, body, waiting_status(status, [problem], generation, now))
            return Outcome(retry_after=self.retry_interval, message=message)
        raise err

    def _artifacts(self, body: dict[str, Any]) -> dict[str, Any] | None:
        # Normally written when the Job is created; recomputed if the operator stopped in between.
        try:
            res = parse_resource(body)
        except ManifestError:
            return None
        return output_location(res, self.settings).to_wire()

    def _secret_problems(self, body: dict[str, Any]) -> list[Problem]:
        """What is wrong now with the Secrets the resource's pod reads (none when unreadable)."""
        try:
            res = parse_resource(body)
        except ManifestError:
            return []
        needs = needs_of(res, self.settings)
        namespace = body["metadata"]["namespace"]
        secrets_only = Needs(secrets=needs.secrets)
        return find_problems(secrets_only, self._fetch(secrets_only, namespace), namespace)

    def _fetch(self, needs: Needs, namespace: str) -> Fetched:
        fetched = Fetched()
        for ref in needs.upstream:
            fetched.resources[(ref.kind, ref.name)] = self.kube.get_resource(
                ref.kind, namespace, ref.name
            )
        for key, cm_name in upstream_spec_configmaps(needs):
            upstream = fetched.resources.get(key) or {}
            if (upstream.get("status") or {}).get("phase") != Phase.SUCCEEDED.value:
                continue
            fetched.upstream_jobs[key] = self.kube.get_job(namespace, job_name(*key))
            cm = self.kube.get_config_map(namespace, cm_name)
            text = ((cm or {}).get("data") or {}).get(SPEC_KEY)
            fetched.upstream_specs[key] = _loads(text) if text else None
        for use in needs.secrets:
            if use.ref.name in fetched.secret_keys:
                continue
            try:
                found = self.kube.secret_keys(namespace, use.ref.name)
            except PermissionError:  # not checked (operator.checkSecrets=false)
                keys = {u.ref.key for u in needs.secrets if u.ref.name == use.ref.name}
                found = (frozenset(keys), True)
            fetched.secret_keys[use.ref.name] = found[0] if found else None
            fetched.secrets_opted_in[use.ref.name] = found[1] if found else False
        for cm_name, _ in needs.config_maps:
            fetched.config_maps[cm_name] = self.kube.exists("ConfigMap", namespace, cm_name)
        for claim, _ in needs.claims:
            fetched.claims[claim] = self.kube.exists("PersistentVolumeClaim", namespace, claim)
        if needs.service_account:
            fetched.service_account = self.kube.exists(
                "ServiceAccount", namespace, needs.service_account
            )
        return fetched

    def write_status(self, kind: str, body: dict[str, Any], patch: dict[str, Any]) -> None:
        """Patch a resource's status as every reconcile does (events, metrics, no-op skipped)."""
        self._write(kind, body, patch)

    def _write(self, kind: str, body: dict[str, Any], patch: dict[str, Any]) -> None:
        """Patch status when it changes anything; post an Event for each transition."""
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        old: dict[str, Any] = body.get("status") or {}
        if is_noop(old, patch):
            if old.get("phase"):
                self.phases.record(kind, namespace, name, old["phase"])
            return
        # Conditioned on the version the decision was made from: of two writers deciding the
        # same transition from the same version (two operator pods overlapping while one
        # replaces the other), one writes it and posts its Event; the other reads again.
        version = meta.get("resourceVersion")
        patched = self.kube.patch_status(kind, namespace, name, patch, resource_version=version)
        if isinstance(patched, dict) and patched.get("metadata"):
            self.bodies.remember(kind, patched)
        new = merge_patch(old, patch)
        phase = new.get("phase") or ""
        if phase and phase != old.get("phase"):
            metrics.TRANSITIONS.labels(kind, phase).inc()
            log.info(
                "%s %s/%s: %s -> %s (%s)",
                kind,
                namespace,
                name,
                old.get("phase") or "-",
                phase,
                new.get("message") or "",
            )
        if phase:
            self.phases.record(kind, namespace, name, phase)
        for transition in transitions(old, new):
            self.post_event(body, transition)


def _job_finished(job: dict[str, Any]) -> bool:
    return any(
        c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
        for c in (job.get("status") or {}).get("conditions") or []
    )


def _foreign_child(planned: dict[str, Any], existing: dict[str, Any], owner_uid: str) -> str:
    """Why an existing object of a child's name is not this resource's child ('' if it is).

    An ownerReference can be written by anyone who may create the object, so the spec
    ConfigMap must also hold exactly the planned spec: the workload runs what it says.
    """
    kind, name = planned["kind"], planned["metadata"]["name"]
    what = f"{kind} {name!r} already exists and"
    fix = "; delete or rename it to let this resource start"
    if owner_uid not in owner_uids(existing):
        return f"{what} is not owned by this resource{fix}"
    if kind == "ConfigMap" and (existing.get("data") or {}) != planned["data"]:
        why = "written by someone else, or for earlier inputs"
        return f"{what} does not hold the planned spec ({why}){fix}"
    return ""


def _api_message(err: ApiException) -> str:
    """The API server's own explanation (Status.message), else the HTTP reason."""
    try:
        body = json.loads(err.body or "{}")
    except (TypeError, ValueError):
        body = {}
    message = body.get("message") if isinstance(body, dict) else None
    return str(message or err.reason or err.status)


def _loads(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
