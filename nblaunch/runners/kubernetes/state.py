"""Reading Jobs and pods as the API server reports them (plain dicts, camelCase):
whether an attempt waits, runs or ended, and why."""

from __future__ import annotations

from typing import Any

from nblaunch.runners.base import AttemptEnd
from nblaunch.runners.kubernetes.manifests import CONTAINER, INDEX_LABEL
from nblaunch.runtime.contract import Outcome, Result


def conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The object's conditions that hold (status "True"), by type."""
    found = (obj.get("status") or {}).get("conditions") or []
    return {c["type"]: c for c in found if c.get("status") == "True"}


def job_finished(job: dict[str, Any]) -> bool:
    held = conditions(job)
    return "Complete" in held or "Failed" in held or "SuccessCriteriaMet" in held


def index(pod: dict[str, Any]) -> int:
    labels = (pod.get("metadata") or {}).get("labels") or {}
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    return int(labels.get(INDEX_LABEL) or annotations.get(INDEX_LABEL) or 0)


def created(pod: dict[str, Any]) -> str:
    return str((pod.get("metadata") or {}).get("creationTimestamp") or "")


def container_state(pod: dict[str, Any]) -> dict[str, Any]:
    """The ``state`` of the runtime's container: ``{waiting|running|terminated: {...}}``."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == CONTAINER:
            return status.get("state") or {}
    return {}


def terminated(pod: dict[str, Any]) -> dict[str, Any] | None:
    return container_state(pod).get("terminated")


def pod_ended(pod: dict[str, Any], deleted: bool) -> bool:
    """The pod will run nothing more: it ended, or it is gone or going."""
    phase = (pod.get("status") or {}).get("phase")
    return (
        deleted
        or phase in ("Succeeded", "Failed")
        or bool((pod.get("metadata") or {}).get("deletionTimestamp"))
    )


def pod_started(pod: dict[str, Any]) -> bool:
    state = container_state(pod)
    return "running" in state or "terminated" in state


def waiting_reason(job: dict[str, Any], lead: dict[str, Any] | None, kueue: bool) -> str:
    """Why the attempt has not started: what Kueue, the scheduler or the kubelet says."""
    if (job.get("spec") or {}).get("suspend"):
        return "suspended: waiting for Kueue to admit it" if kueue else "suspended"
    if lead is None:
        return "waiting for the Job controller to create its pods"
    for cond in (lead.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return f"{cond.get('reason') or 'Unschedulable'}: {cond.get('message') or ''}".strip()
    waiting = container_state(lead).get("waiting")
    if waiting:
        why = waiting.get("reason") or "waiting"
        return f"{why}: {waiting['message']}" if waiting.get("message") else why
    return "pending"


def end_of(
    job: dict[str, Any] | None,
    lead: dict[str, Any] | None,
    result: Result | None,
    engine_kept: bool,
) -> AttemptEnd:
    """How an attempt ended: the runtime's result when it reported one, else what the
    cluster says of the pod and the Job."""
    stopped = terminated(lead) if lead is not None else None
    code = stopped.get("exitCode") if stopped else None
    failed = conditions(job).get("Failed") if job is not None else None
    if failed is not None and failed.get("reason") == "DeadlineExceeded":
        error = _error("DeadlineExceeded", f"the Job passed its deadline: {failed.get('message')}")
        return AttemptEnd(Outcome.TIMEOUT, error, code, engine_kept=engine_kept)
    disrupted = lead is not None and "DisruptionTarget" in conditions(lead)
    suspended = job is not None and bool((job.get("spec") or {}).get("suspend"))
    if disrupted or suspended:
        # The cluster took the pod (spot reclaim, preemption, eviction) or Kueue took the
        # Job's admission back: whatever the runtime managed to say, the next attempt
        # resumes from the checkpoint.
        return AttemptEnd(Outcome.PREEMPTED, None, code, engine_kept=engine_kept)
    if result is not None:
        return AttemptEnd(result.outcome, result.error, code, engine_kept=engine_kept)
    if stopped is not None and stopped.get("reason") == "OOMKilled":
        error = _error("OutOfMemory", "the container was killed at its memory limit (OOMKilled)")
        return AttemptEnd(Outcome.OOM, error, code, engine_kept=engine_kept)
    if job is not None and "Complete" in conditions(job):
        return AttemptEnd(Outcome.SUCCEEDED, None, code, engine_kept=engine_kept)
    if stopped is None:
        what = "the Job was deleted" if job is None else "its pod was deleted"
        if lead is None:
            what = "the Job ended before its pod started"
        return AttemptEnd(Outcome.LOST, _error("PodLost", what), code, engine_kept=engine_kept)
    why = stopped.get("message") or stopped.get("reason") or ""
    error = _error(
        "RuntimeCrashed",
        f"the pod's container exited with code {code} before the runtime "
        f"reported: {why}".strip().rstrip(":"),
    )
    return AttemptEnd(Outcome.RUNTIME_CRASHED, error, code, engine_kept=engine_kept)


def _error(ename: str, evalue: str) -> dict[str, Any]:
    return {"ename": ename, "evalue": evalue, "cell_index": None}
