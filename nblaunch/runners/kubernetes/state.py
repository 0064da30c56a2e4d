"""Reading Jobs and pods as the API server reports them (plain dicts, camelCase):
whether an attempt waits, runs or ended, and why."""

from __future__ import annotations

import calendar
import time
from typing import Any

from nblaunch.runners.base import AttemptEnd
from nblaunch.runners.kubernetes.manifests import CONTAINER, INDEX_LABEL
from nblaunch.runtime.contract import USER_ERROR_EXIT_CODE, Outcome, Result


def conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The object's conditions that hold (status "True"), by type."""
    found = (obj.get("status") or {}).get("conditions") or []
    return {c["type"]: c for c in found if c.get("status") == "True"}


#: conditions of a Job that ends (1.31+ set the *Target/*Met ones first, while its pods
#: still stop)
_ENDING = ("Complete", "SuccessCriteriaMet", "Failed", "FailureTarget")


def job_finished(job: dict[str, Any]) -> bool:
    held = conditions(job)
    return any(kind in held for kind in _ENDING)


def job_failure(job: dict[str, Any] | None) -> dict[str, Any] | None:
    """The condition saying why the Job failed, if it did."""
    held = conditions(job) if job is not None else {}
    return held.get("Failed") or held.get("FailureTarget")


def index(pod: dict[str, Any]) -> int:
    labels = (pod.get("metadata") or {}).get("labels") or {}
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    return int(labels.get(INDEX_LABEL) or annotations.get(INDEX_LABEL) or 0)


def created(obj: dict[str, Any]) -> tuple[str, int]:
    """A key ordering objects by creation (timestamps have whole seconds: within one, by
    resourceVersion, which servers hand out rising though it is documented as opaque)."""
    meta = obj.get("metadata") or {}
    version = str(meta.get("resourceVersion") or "0")
    return str(meta.get("creationTimestamp") or ""), int(version) if version.isdigit() else 0


def container_state(pod: dict[str, Any]) -> dict[str, Any]:
    """The ``state`` of the runtime's container: ``{waiting|running|terminated: {...}}``."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == CONTAINER:
            return status.get("state") or {}
    return {}


def terminated(pod: dict[str, Any]) -> dict[str, Any] | None:
    return container_state(pod).get("terminated")


def pod_ended(pod: dict[str, Any], deleted: bool) -> bool:
    """The pod runs nothing more: it ended, or it is gone. (A pod being deleted still
    runs until its container stops: the runtime checkpoints and reports in its grace.)"""
    phase = (pod.get("status") or {}).get("phase")
    return deleted or phase in ("Succeeded", "Failed") or terminated(pod) is not None


def replaced(pod: dict[str, Any] | None) -> bool:
    """Whether the Job controller replaces this ended pod rather than ending the Job:
    the cluster took it, or it failed otherwise than by the notebook's own error."""
    if pod is None:
        return False
    if "DisruptionTarget" in conditions(pod):
        return True
    stopped = terminated(pod)
    code = stopped.get("exitCode") if stopped else None
    phase = (pod.get("status") or {}).get("phase")
    return phase != "Succeeded" and code not in (0, USER_ERROR_EXIT_CODE)


def started_at(job: dict[str, Any]) -> float:
    """When the Job (last) started, in seconds since the epoch; now if it has not."""
    stamp = (job.get("status") or {}).get("startTime")
    return epoch_seconds(stamp) if stamp else time.time()


def epoch_seconds(stamp: str) -> float:
    """Seconds since the epoch of an RFC 3339 timestamp in UTC (whole seconds)."""
    head = stamp.rstrip("Z").partition(".")[0]
    return float(calendar.timegm(time.strptime(head, "%Y-%m-%dT%H:%M:%S")))


def pod_failed(pod: dict[str, Any], deleted: bool) -> bool:
    """The pod ended short of success (or is gone before it succeeded)."""
    return pod_ended(pod, deleted) and (pod.get("status") or {}).get("phase") != "Succeeded"


def suspended(job: dict[str, Any] | None) -> bool:
    """Kueue holds the Job back (not admitted yet, or its admission taken back)."""
    return job is not None and bool((job.get("spec") or {}).get("suspend"))


def pod_started(pod: dict[str, Any]) -> bool:
    state = container_state(pod)
    return "running" in state or "terminated" in state


def waiting_reason(job: dict[str, Any], lead: dict[str, Any] | None, kueue: bool) -> str:
    """Why the attempt has not started: what Kueue, the scheduler or the kubelet says."""
    if suspended(job):
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
    failed = job_failure(job)
    if failed is not None and failed.get("reason") == "DeadlineExceeded":
        error = _error("DeadlineExceeded", f"the Job passed its deadline: {failed.get('message')}")
        return AttemptEnd(Outcome.TIMEOUT, error, code, engine_kept=engine_kept)
    disrupted = lead is not None and "DisruptionTarget" in conditions(lead)
    if disrupted or suspended(job):
        # The cluster took the pod (spot reclaim, preemption, eviction) or Kueue took the
        # Job's admission back: whatever the runtime managed to say, the next attempt
        # resumes from the checkpoint.
        return AttemptEnd(Outcome.PREEMPTED, None, code, engine_kept=engine_kept)
    if result is not None:
        return AttemptEnd(result.outcome, result.error, code, engine_kept=engine_kept)
    if stopped is not None and stopped.get("reason") == "OOMKilled":
        error = _error("OutOfMemory", "the container was killed at its memory limit (OOMKilled)")
        return AttemptEnd(Outcome.OOM, error, code, engine_kept=engine_kept)
    held = conditions(job) if job is not None else {}
    if "Complete" in held or "SuccessCriteriaMet" in held:
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
