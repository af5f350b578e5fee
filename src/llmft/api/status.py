"""Writing and reading a resource's status, alike in the operator, `llmft run` and a workload.

Status is read through the typed model (`read_status`), conditions are set in the standard
Kubernetes way (`set_condition`: the transition time moves only when the status flips), and a
status patch is applied with JSON merge-patch semantics (`merge_patch`, RFC 7386: objects merge
at every depth, lists and values replace, null deletes), which is what the API server does with
the merge patches the operator and the workloads send. The local runner's status file follows
the same rules, so the two places cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from llmft.api.common import BaseStatus, Condition, Phase, ResourceStatus

StatusT = TypeVar("StatusT", bound=BaseStatus)

READY = "Ready"
INPUTS_READY = "InputsReady"
RUNNING = "Running"
COMPLETE = "Complete"
FAILED = "Failed"
SPEC_OUT_OF_DATE = "SpecOutOfDate"
# True when every model the workload loaded belongs to a verified family (llmft.families).
MODEL_FAMILY_KNOWN = "ModelFamilyKnown"
DEGRADED = "Degraded"
CONDITION_ORDER = (
    READY,
    INPUTS_READY,
    RUNNING,
    COMPLETE,
    FAILED,
    DEGRADED,
    SPEC_OUT_OF_DATE,
    MODEL_FAMILY_KNOWN,
)
# A workload that succeeded with a caveat reports it as this result metric ("Reason: sentence");
# the operator and the local runner turn it into a Degraded condition with that reason.
DEGRADED_METRIC = "degraded"
MESSAGE_LIMIT = 1000


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def clip(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """One line of at most `limit` characters (condition and status messages)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_status(raw: Mapping[str, Any] | None) -> ResourceStatus:
    """The typed status of a resource from its JSON (fields llmft does not know are ignored)."""
    return read_status_as(raw, ResourceStatus)


def read_status_as(raw: Mapping[str, Any] | None, model: type[StatusT]) -> StatusT:
    """`raw` read as a kind's own status model (e.g. EvaluationStatus); unknown fields ignored."""
    aliases = {info.alias or name for name, info in model.model_fields.items()}
    return model.model_validate({k: v for k, v in (raw or {}).items() if k in aliases})


def find_condition(conditions: Sequence[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)


def set_condition(
    conditions: Sequence[Condition],
    type_: str,
    status: bool,
    reason: str,
    message: str,
    generation: int | None,
    now: str,
) -> list[Condition]:
    """`conditions` with one condition set; its transition time moves only when status flips."""
    value = "True" if status else "False"
    old = find_condition(conditions, type_)
    since = old.last_transition_time if old is not None and old.status == value else None
    cond = Condition(
        type=type_,
        status=value,
        reason=reason,
        message=clip(message),
        last_transition_time=since or now,
        observed_generation=generation,
    )
    others = [c for c in conditions if c.type != type_]
    rank = {t: i for i, t in enumerate(CONDITION_ORDER)}
    return sorted([*others, cond], key=lambda c: rank.get(c.type, len(rank)))


def set_phase_conditions(
    conditions: Sequence[Condition],
    phase: Phase | str,
    reason: str,
    message: str,
    generation: int | None,
    now: str,
) -> list[Condition]:
    """`conditions` with Ready, Running, Complete and Failed set from the phase: Ready and
    Complete when it succeeded, Running while it runs, Failed (with the reason) when it failed."""
    ok = phase == Phase.SUCCEEDED
    failed = phase == Phase.FAILED
    conds = set_condition(conditions, READY, ok, reason, message, generation, now)
    conds = set_condition(conds, RUNNING, phase == Phase.RUNNING, reason, message, generation, now)
    conds = set_condition(conds, COMPLETE, ok, reason, message, generation, now)
    return set_condition(
        conds,
        FAILED,
        failed,
        reason if failed else "NotFailed",
        message if failed else "",
        generation,
        now,
    )


def model_family_condition(
    conditions: Sequence[Condition],
    raw: Mapping[str, Any] | None,
    generation: int | None,
    now: str,
) -> list[Condition]:
    """`conditions` with ModelFamilyKnown set from the chat formats a workload reported.

    A FineTuneJob reports `status.model`, an Evaluation `status.models` (per arm); a model
    outside llmft's families trains with a documented fallback and its warnings, and this
    condition turns False with them, so `kubectl get` users see it without reading logs.
    """
    raw = raw or {}
    formats: dict[str, Any] = {}
    if isinstance(raw.get("model"), Mapping):
        formats[""] = raw["model"]
    for arm, fmt in (raw.get("models") or {}).items():
        if isinstance(fmt, Mapping):
            formats[f"arm {arm}: "] = fmt
    if not formats:
        return list(conditions)
    warnings = [f"{where}{w}" for where, fmt in formats.items() for w in fmt.get("warnings") or []]
    families = sorted({str(fmt.get("family")) for fmt in formats.values()})
    if warnings:
        return set_condition(
            conditions,
            MODEL_FAMILY_KNOWN,
            False,
            "UnverifiedModelFamily",
            "; ".join(warnings),
            generation,
            now,
        )
    message = f"model family: {', '.join(families)}"
    return set_condition(
        conditions, MODEL_FAMILY_KNOWN, True, "VerifiedModelFamily", message, generation, now
    )


def degraded_condition(metrics: Mapping[str, Any]) -> tuple[str, str] | None:
    """(reason, message) of the Degraded condition a workload's result metrics call for."""
    text = metrics.get(DEGRADED_METRIC)
    if not isinstance(text, str) or not text:
        return None
    reason, sep, message = text.partition(": ")
    if not sep or not reason.isalnum():
        return "Degraded", text
    return reason, message


def drop_condition(conditions: Sequence[Condition], type_: str) -> list[Condition]:
    return [c for c in conditions if c.type != type_]


def merge_patch(current: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """`current` with `patch` applied as a JSON merge patch (RFC 7386)."""
    out = dict(current)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_patch(out[key], value)
        elif isinstance(value, Mapping):
            out[key] = merge_patch({}, value)
        else:
            out[key] = value
    return out


def is_noop(current: Any, patch: Any) -> bool:
    """Whether merge-patching `patch` onto `current` would change nothing."""
    if isinstance(patch, Mapping):
        if not isinstance(current, Mapping):
            return False
        return all(
            (k not in current) if v is None else is_noop(current.get(k), v)
            for k, v in patch.items()
        )
    return bool(current == patch)
