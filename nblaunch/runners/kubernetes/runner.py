"""The Kubernetes runner: each attempt is an Indexed ``batch/v1`` Job, run by the
cluster's own Job controller (and Kueue, when the queue names a LocalQueue)."""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from pathlib import Path
from typing import Any

from nblaunch.errors import EngineError
from nblaunch.runners.base import AttemptEnd, ClusterRunner, Launch, Pending
from nblaunch.runners.kubernetes.client import LogFollower, WatchedObjects, api_client, api_error
from nblaunch.runners.kubernetes.manifests import (
    ATTEMPT_LABEL,
    CONTAINER,
    JOB_LABEL,
    JOB_NAME_LABEL,
    UID_PLACEHOLDER,
    Attempt,
    attempt_objects,
    bundle_archive,
    check_archive,
    owned_by,
    queue_selector,
)
from nblaunch.runners.kubernetes.options import KubernetesOptions
from nblaunch.runners.kubernetes.state import (
    created,
    end_of,
    index,
    job_finished,
    pod_ended,
    pod_failed,
    pod_started,
    replaced,
    started_at,
    suspended,
    terminated,
    waiting_reason,
)
from nblaunch.runtime.contract import (
    BUNDLE_SPEC,
    JobDir,
    Result,
    RunDir,
    append_line,
    make_private_dir,
    replace_private,
)
from nblaunch.runtime.records import RecordReader, result_from_message

log = logging.getLogger(__name__)

#: how long the first look at the cluster may take before a poll says "waiting"
SYNC_WAIT_S = 10.0
#: how long an ended pod's log may take to be read to its end (its result is in it)
DRAIN_S = 15.0
#: pauses between tries to delete a Job (about ten minutes in all)
DELETE_BACKOFF_S = (1, 2, 4, 8, 15, 30, 60, 60, 60, 60, 60, 60, 60, 60, 60)
#: the file in the attempt's folder naming the last log line read (an agent that
#: restarts resumes the follow there rather than reading the log twice)
LOG_CURSOR = "log-cursor"


class KubernetesRunner(ClusterRunner):
    """Creates one Job (+ bundle ConfigMap, + headless Service for several nodes) per
    attempt and reads its state from watches.

    The Job controller restarts a pod the cluster took away (``DisruptionTarget``)
    or that died without a word; the agent sees the attempt's pod end, ends the
    attempt, and the next attempt adopts the same Job, which resumes from the
    job's newest checkpoint (on the queue's ``checkpoint_volume``). Metrics, the
    output notebook and the result travel in the pod's log (``runtime.records``),
    which is followed into the attempt's local folder.
    """

    name = "kubernetes"
    Options = KubernetesOptions
    options: KubernetesOptions
    #: an evicted pod is killed at the end of its terminationGracePeriodSeconds
    ends_preempted_itself = True

    def __init__(self, options: KubernetesOptions) -> None:
        super().__init__(options)
        self._api: Any = None
        self._connected_at = 0.0
        self._jobs: WatchedObjects | None = None
        self._pods: WatchedObjects | None = None
        self._followers: dict[str, LogFollower] = {}
        self._ended_at: dict[str, float] = {}
        #: Jobs this runner deleted (its watch may not have seen them go yet)
        self._deleted: set[str] = set()
        #: pods whose Job got its deadline when they started
        self._limited: set[str] = set()
        self._lock = threading.Lock()

    # -- the objects of an attempt ----------------------------------------------

    def _objects(self, launch: Launch) -> tuple[Attempt, bytes, list[dict[str, Any]]]:
        spec = json.loads((launch.bundle / BUNDLE_SPEC).read_text())
        attempt = Attempt(launch.job_id, launch.attempt, spec, launch.env)
        archive = bundle_archive(launch.bundle)
        check_archive(archive, self.options)
        return attempt, archive, attempt_objects(attempt, self.options, archive)

    def manifests(self, launch: Launch) -> list[dict[str, Any]]:
        _, _, (job, *owned) = self._objects(launch)
        return [job, *(owned_by(obj, job["metadata"]["name"], UID_PLACEHOLDER) for obj in owned)]

    # -- the cluster -------------------------------------------------------------

    def start(self) -> None:
        self._connect()

    def _connect(self) -> Any:
        with self._lock:
            if self._api is None:
                from kubernetes import client

                api = api_client(self.options)
                core, batch = client.CoreV1Api(api), client.BatchV1Api(api)
                selector = queue_selector(self.options)
                ns = self.options.namespace
                self._jobs = WatchedObjects(batch.list_namespaced_job, ns, selector).start()
                self._pods = WatchedObjects(core.list_namespaced_pod, ns, selector).start()
                self._api = (core, batch)
                self._connected_at = time.monotonic()
        return self._api

    def _watched(self) -> tuple[WatchedObjects, WatchedObjects]:
        self._connect()
        assert self._jobs is not None and self._pods is not None
        for cache in (self._jobs, self._pods):
            # Wait for the first list once; a cluster that does not answer then fails
            # each call at once rather than holding up the agent's pass.
            if not cache.synced.wait(max(0.0, self._connected_at + SYNC_WAIT_S - time.monotonic())):
                raise EngineError(
                    f"queue {self.options.name!r}: no answer from Kubernetes in {SYNC_WAIT_S:g}s "
                    f"({cache.error or 'still connecting'})"
                )
        return self._jobs, self._pods

    def _timeout(self) -> float:
        return self.options.client_timeout_s

    # -- submit ------------------------------------------------------------------

    def submit(self, launch: Launch) -> dict[str, Any]:
        adopted = self._adopt(launch)
        if adopted is not None:
            return adopted
        attempt, archive, (job, *owned) = self._objects(launch)
        core, batch = self._connect()
        from kubernetes import client

        ns = self.options.namespace
        volume = self.options.bundle_volume
        if volume is not None:
            _write_archive(volume.path / f"{attempt.name}.tar.gz", archive)
        made = self._create_job(batch, client, job)
        jobs, _ = self._watched()
        jobs.put(batch.api_client.sanitize_for_serialization(made))
        try:
            for obj in owned:
                obj = owned_by(obj, attempt.name, made.metadata.uid)
                create: dict[str, tuple[Any, Any]] = {
                    "ConfigMap": (core.create_namespaced_config_map, client.V1ConfigMap),
                    "Service": (core.create_namespaced_service, client.V1Service),
                }
                call, model = create[obj["kind"]]
                try:
                    call(ns, model.from_dict(obj), _request_timeout=self._timeout())
                except client.ApiException as exc:
                    if exc.status != 409:
                        what = f"create {obj['kind']} {obj['metadata']['name']}"
                        raise api_error(exc, what) from None
        except BaseException:
            self._delete_soon(attempt.name)
            raise
        timeout = attempt.spec.get("timeout_s") or self.options.timeout_s
        return _handle(attempt.name, launch.attempt, attempt.nodes, [], timeout)

    def _create_job(self, batch: Any, client: Any, job: dict[str, Any]) -> Any:
        """Create the Job; a create whose answer was lost may have reached the server
        (409 now, or a timeout): the Job by that name is then this attempt's own."""
        name, ns = job["metadata"]["name"], self.options.namespace
        try:
            return batch.create_namespaced_job(
                ns, client.V1Job.from_dict(job), _request_timeout=self._timeout()
            )
        except Exception as exc:
            if isinstance(exc, client.ApiException) and exc.status != 409:
                raise api_error(exc, f"create Job {name}") from None
            try:
                return batch.read_namespaced_job(name, ns, _request_timeout=self._timeout())
            except Exception:
                raise api_error(exc, f"create Job {name}") from None

    def _adopt(self, launch: Launch) -> dict[str, Any] | None:
        """The previous attempt's Job when the Job controller goes on with it (a pod
        taken away is replaced): this attempt is that Job's next pod."""
        previous = launch.previous
        if not previous or "external_id" not in previous:
            return None
        jobs, pods = self._watched()
        job = jobs.get(previous["external_id"])
        if (
            job is None
            or job_finished(job)
            or jobs.gone(job)
            or previous["external_id"] in self._deleted
            or job.get("metadata", {}).get("deletionTimestamp")
        ):
            return None
        name = job["metadata"]["name"]
        spent = [
            p["metadata"]["name"]
            for p in pods.items()
            if _of_job_named(p, name) and pod_ended(p, pods.gone(p))
        ]
        return _handle(
            previous["external_id"],
            previous["base"],
            previous["nodes"],
            spent,
            previous.get("timeout_s"),
        )

    def recover(self, run: RunDir, job_id: str, attempt: int) -> dict[str, Any] | None:
        jobs, _ = self._watched()
        spec = json.loads((JobDir.of_run(run.path).bundle / BUNDLE_SPEC).read_text())
        timeout = spec.get("timeout_s") or self.options.timeout_s
        for job in jobs.items():
            labels = job["metadata"].get("labels") or {}
            if labels.get(JOB_LABEL) == job_id and labels.get(ATTEMPT_LABEL) == str(attempt):
                nodes = int(job["spec"].get("completions") or 1)
                return _handle(job["metadata"]["name"], attempt, nodes, [], timeout)
        return None

    # -- state -------------------------------------------------------------------

    def poll(self, handle: dict[str, Any], run: RunDir) -> AttemptEnd | Pending | None:
        jobs, pods = self._watched()
        name = handle["external_id"]
        job = jobs.get(name)
        if job is not None and jobs.gone(job):
            job = None
        mine = _attempt_pods(pods, name, handle["spent"])
        lead = mine.get(0)
        if lead is not None:
            self._follow(lead, run)
            self._limit(handle, job, lead)
        job_over = job is None or job_finished(job)
        if not job_over and suspended(job) and (lead is None or not pod_started(lead)):
            assert job is not None  # Kueue has not admitted it (again): nothing ran
            return Pending(waiting_reason(job, lead, bool(self.options.kueue_queue)))
        # Several nodes form one torchrun group: when one of them goes, the others wait
        # in their collectives, so the attempt ends and the next starts a new Job. (One
        # node: the Job controller's replacement pod is the next attempt.)
        renew = handle["nodes"] > 1 and not job_over and not suspended(job)
        broken = next(
            (p for i, p in sorted(mine.items()) if i > 0 and pod_failed(p, pods.gone(p))), None
        )
        if renew and broken is not None:
            self._delete_soon(name)
            self._forget(name)
            return end_of(job, broken, _reported(broken), engine_kept=False)
        lead_over = lead is not None and pod_ended(lead, pods.gone(lead))
        if not job_over and not lead_over:
            if lead is not None and pod_started(lead):
                return None
            assert job is not None
            return Pending(waiting_reason(job, lead, bool(self.options.kueue_queue)))
        if lead is not None and not lead_over:
            return None  # the Job ended or went; its pod is still stopping
        if lead is not None and not self._drained(lead):
            return None
        result = Result.read(run.result)
        if result is None and lead is not None:
            result = _reported(lead)
            if result is not None:
                result.write(run.result)
        # The pod ended and the Job goes on: the Job controller replaces the pod (or
        # Kueue admits the Job again), and the next attempt is that.
        kept = not job_over and (suspended(job) or replaced(lead))
        if kept and renew:
            self._delete_soon(name)
            kept = False
        end = end_of(job, lead, result, engine_kept=kept)
        if not kept:
            self._forget(name)
        return end

    def _limit(
        self, handle: dict[str, Any], job: dict[str, Any] | None, pod: dict[str, Any]
    ) -> None:
        """Once the attempt's pod runs, give the Job a deadline of the job's time limit
        from now (``activeDeadlineSeconds`` counts from the Job's start, waiting and
        earlier pods included): the cluster stops it if no agent does."""
        timeout = handle.get("timeout_s")
        pod_name = pod["metadata"]["name"]
        if not timeout or job is None or not pod_started(pod) or pod_name in self._limited:
            return
        self._limited.add(pod_name)
        began = started_at(job)
        deadline = math.ceil(time.time() - began + timeout + self.options.cancel_grace_s)
        patch = {"spec": {"activeDeadlineSeconds": deadline}}
        threading.Thread(
            target=self._patch_job, args=(job["metadata"]["name"], patch), daemon=True
        ).start()

    def _patch_job(self, job_name: str, patch: dict[str, Any]) -> None:
        _, batch = self._connect()
        try:
            batch.patch_namespaced_job(
                job_name, self.options.namespace, patch, _request_timeout=self._timeout()
            )
        except Exception as exc:  # the agent's own time limit still holds
            log.warning("setting the deadline of Job %s: %s", job_name, exc)

    def _drained(self, pod: dict[str, Any]) -> bool:
        """Whether the ended pod's log has been read to its end (or given up on)."""
        pod_name = pod["metadata"]["name"]
        follower = self._followers.get(pod_name)
        first = self._ended_at.setdefault(pod_name, time.monotonic())
        if follower is None or follower.done.is_set():
            return True
        return time.monotonic() - first > DRAIN_S

    def _follow(self, pod: dict[str, Any], run: RunDir) -> None:
        """Follow the attempt's pod-0 log into the attempt's folder (once it has one)."""
        pod_name = pod["metadata"]["name"]
        if pod_name in self._followers or not (pod_started(pod) or terminated(pod)):
            return
        make_private_dir(run.logs)
        reader = RecordReader(run)
        cursor = run.path / LOG_CURSOR
        start_after = cursor.read_text().strip() if cursor.exists() else None
        pods = self._pods
        assert pods is not None

        def sink(stamp: str, line: str) -> None:
            text = reader.feed(line)
            if text is not None:
                append_line(run.stdout, text)
            if stamp:
                replace_private(cursor, stamp.encode())

        def ended() -> bool:
            now = pods.get(pod_name)
            return now is None or pod_ended(now, pods.gone(now))

        core, _ = self._connect()
        follower = LogFollower(
            core, self.options.namespace, pod_name, CONTAINER, sink, ended, start_after
        )
        self._followers[pod_name] = follower.start()

    def _forget(self, job_name: str) -> None:
        """Drop what the runner kept of a Job that ended for good."""
        volume = self.options.bundle_volume
        if volume is not None:
            (volume.path / f"{job_name}.tar.gz").unlink(missing_ok=True)
        if self._pods is not None:
            self._pods.forget(lambda pod: not _of_job_named(pod, job_name))
        prefix = f"{job_name}-"  # its pods' names
        for kept in (self._followers, self._ended_at):
            for pod_name in [p for p in kept if p.startswith(prefix)]:
                del kept[pod_name]
        self._limited = {p for p in self._limited if not p.startswith(prefix)}

    # -- stopping ----------------------------------------------------------------

    def cancel(self, handle: dict[str, Any], grace_s: float) -> None:
        # Pods get SIGTERM and their termination grace: the runtime checkpoints and
        # its result still reaches the log.
        self._delete_soon(handle["external_id"])

    def _delete_soon(self, job_name: str) -> None:
        """Delete the Job (background propagation), retrying until the API answers: a
        cancel is never lost to one failed call, and never blocks or fails the agent."""
        self._deleted.add(job_name)
        threading.Thread(target=self._delete, args=(job_name,), daemon=True).start()

    def _delete(self, job_name: str) -> None:
        from kubernetes import client

        _, batch = self._connect()
        for wait in DELETE_BACKOFF_S:
            try:
                batch.delete_namespaced_job(
                    job_name,
                    self.options.namespace,
                    propagation_policy="Background",
                    _request_timeout=self._timeout(),
                )
                return
            except client.ApiException as exc:
                if exc.status == 404:
                    return
                log.warning("deleting Job %s: %s", job_name, api_error(exc, "delete it"))
            except Exception as exc:
                log.warning("deleting Job %s: %s", job_name, exc)
            time.sleep(wait)
        log.error("gave up deleting Job %s; delete it by hand", job_name)

    def preempt(self, handle: dict[str, Any]) -> None:
        """Evict the attempt's pod, as a node drain or a spot reclaim would: the pod gets
        ``DisruptionTarget`` and SIGTERM, and the Job controller replaces it."""
        _, pods = self._watched()
        lead = _attempt_pods(pods, handle["external_id"], handle["spent"]).get(0)
        if lead is None or pod_ended(lead, pods.gone(lead)):
            return
        core, _ = self._connect()
        from kubernetes import client

        name, ns = lead["metadata"]["name"], self.options.namespace
        body = client.V1Eviction.from_dict({"metadata": {"name": name, "namespace": ns}})
        try:
            core.create_namespaced_pod_eviction(name, ns, body, _request_timeout=self._timeout())
        except Exception as exc:  # 404: gone already; 429: a PodDisruptionBudget says no
            log.warning("evicting pod %s: %s", name, exc)


def _handle(
    job_name: str, base: int, nodes: int, spent: list[str], timeout_s: float | None
) -> dict[str, Any]:
    """A Kubernetes attempt: its Job, the attempt that created the Job, its nodes, the
    Job's pods that earlier attempts ran (this attempt's pod is the next one), and the
    job's time limit."""
    return {
        "external_id": job_name,
        "base": base,
        "nodes": nodes,
        "spent": spent,
        "timeout_s": timeout_s,
    }


def _of_job_named(pod: dict[str, Any], job_name: str) -> bool:
    return (pod["metadata"].get("labels") or {}).get(JOB_NAME_LABEL) == job_name


def _attempt_pods(
    pods: WatchedObjects, job_name: str, spent: list[str]
) -> dict[int, dict[str, Any]]:
    """The attempt's pod of each index: the first of the Job's pods no earlier attempt ran."""
    mine: dict[int, dict[str, Any]] = {}
    for pod in sorted(pods.items(), key=created):
        if _of_job_named(pod, job_name) and pod["metadata"]["name"] not in spent:
            mine.setdefault(index(pod), pod)
    return mine


def _reported(pod: dict[str, Any]) -> Result | None:
    """The result the pod's runtime left in its termination message, if any."""
    stopped = terminated(pod)
    return result_from_message(stopped.get("message") if stopped else None)


def _write_archive(path: Path, data: bytes) -> None:
    make_private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
    tmp.chmod(0o644)  # the pod runs as another user
    os.replace(tmp, path)
