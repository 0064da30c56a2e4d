"""The agent: claims jobs, hands them to runners, and turns their ends into states.

One agent serves one ``$NBLAUNCH_HOME``; it holds ``agent.lock`` for its whole
life. It sleeps in ``select`` on its wake FIFO (a submit or cancel writes one
byte) and on a SIGCHLD self-pipe (a local attempt ended), so nothing waits on
a polling timer between a submit and the job starting.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import time
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from types import FrameType
from typing import Any
from wsgiref.simple_server import WSGIServer

from nblaunch.agent import lockfile
from nblaunch.agent.queue_metrics import serve_queue_metrics
from nblaunch.errors import NBLaunchError, TransitionError
from nblaunch.home import queues_file, store_path
from nblaunch.queue import policy
from nblaunch.queue.config import load_queues, runner_for, unavailable_queues
from nblaunch.queue.rows import AttemptRow, JobRow, held_spans
from nblaunch.queue.states import State, sources_of
from nblaunch.queue.store import Store
from nblaunch.runners.base import AttemptEnd, Launch, Pending, QueueOptions, Runner, job_env
from nblaunch.runtime.contract import JobDir, Outcome, RunDir, job_cost
from nblaunch.runtime.metrics import read_new

log = logging.getLogger("nblaunch.agent")

HEARTBEAT_S = 1.0
#: how long a claimed attempt without a handle may take to show its runtime started
ADOPT_GRACE_S = 5.0
#: the runtime's own start-up timeout fires first; the agent steps in this much later
KERNEL_START_MARGIN_S = 30.0


class Stop(str, Enum):
    """Why the agent stopped an attempt (``attempts.stop_reason``)."""

    TIMEOUT = "timeout"
    KERNEL_START = "kernel_start"
    PRIORITY = "priority"
    REQUESTED = "requested"


#: stops that preempt: SIGTERM, a grace to checkpoint, and the next attempt resumes
PREEMPTIONS = frozenset({Stop.PRIORITY, Stop.REQUESTED})


def _stopped_end(job: JobRow, attempt: AttemptRow, end: AttemptEnd) -> AttemptEnd:
    """How an attempt the agent stopped ended: a time limit, a kernel that never
    started, or a preemption (for a higher priority, or asked for), whatever the
    runtime made of the signal (unless it finished first)."""
    if end.outcome is Outcome.SUCCEEDED or attempt.stop_reason is None:
        return end
    if attempt.stop_reason in PREEMPTIONS:
        return AttemptEnd(Outcome.PREEMPTED, None, end.exit_code)
    if attempt.stop_reason == Stop.TIMEOUT:
        error = {
            "ename": "Timeout",
            "evalue": f"the attempt ran past its {job.timeout_s or 0:g}s time limit",
            "cell_index": None,
        }
        return AttemptEnd(Outcome.TIMEOUT, error, end.exit_code)
    error = {
        "ename": "KernelStartFailed",
        "evalue": "the kernel did not come up; the attempt was stopped",
        "cell_index": None,
    }
    return AttemptEnd(Outcome.KERNEL_START_FAILED, error, end.exit_code)


@dataclass
class Agent:
    root: Path
    queue_names: list[str] | None = None
    idle_timeout_s: float | None = None
    #: serve every queue's depth for Prometheus at ``http://metrics_host:metrics_port/metrics``
    metrics_port: int | None = None
    metrics_host: str = "0.0.0.0"
    _stop: bool = field(default=False, init=False)
    _cancelling: set[tuple[str, int]] = field(default_factory=set, init=False)

    def __post_init__(self) -> None:
        self.queues: dict[str, QueueOptions] = {}
        self.runners: dict[str, Runner] = {}
        self._config_stamp: float | None = None
        self._load_config()
        self.store = Store(store_path(self.root))

    def _load_config(self) -> None:
        """(Re)read queues.toml. Runners of unchanged queues are kept: they hold
        the attempts' child processes."""
        path = queues_file(self.root)
        self._config_stamp = path.stat().st_mtime if path.exists() else None
        configs = load_queues(self.root)
        for name, reason in unavailable_queues(self.root).items():
            log.error("queue %s is not served: %s", name, reason)
        if self.queue_names:
            unknown = [q for q in self.queue_names if q not in configs]
            if unknown:
                raise NBLaunchError(
                    f"unknown queue {unknown[0]!r}; known queues: {', '.join(sorted(configs))}"
                )
            configs = {q: configs[q] for q in self.queue_names}
        runners = {}
        for name, cfg in configs.items():
            runner = self.runners.get(name)
            if runner is None or runner.name != cfg.runner:
                runner = runner_for(cfg)
                try:
                    runner.start()
                except Exception:  # a failing backend must not stop the other queues
                    log.exception("queue %s is not served: its runner did not start", name)
                    continue
            runner.options = cfg
            runners[name] = runner
        self.queues = {name: configs[name] for name in runners}
        self.runners = runners

    def _reload_if_changed(self) -> None:
        path = queues_file(self.root)
        stamp = path.stat().st_mtime if path.exists() else None
        if stamp == self._config_stamp:
            return
        try:
            self._load_config()
        except NBLaunchError as exc:  # a typo in the file must not stop running jobs
            self._config_stamp = stamp
            log.error("queues.toml not reloaded: %s", exc)
            return
        log.info("queues.toml reloaded; serving %s", ", ".join(self.queues))

    # -- lifetime ----------------------------------------------------------

    def run(self) -> int:
        lock_fd = None
        # A submitter probing for a live agent holds the lock for an instant.
        for _ in range(100):
            lock_fd = lockfile.try_hold(lockfile.agent_lock_path(self.root))
            if lock_fd is not None or lockfile.holder_pid(self.root) is not None:
                break
            time.sleep(0.005)
        if lock_fd is None:
            raise NBLaunchError(
                f"an agent is already running for {self.root} "
                f"(pid {lockfile.holder_pid(self.root)}); "
                "stop it first or use another NBLAUNCH_HOME"
            )
        os.ftruncate(lock_fd, 0)
        os.write(lock_fd, str(os.getpid()).encode())
        try:
            metrics = self._serve_metrics()
        except NBLaunchError:
            os.close(lock_fd)
            raise
        wake_r, wake_w = lockfile.open_wake_channel(self.root)
        chld_r, chld_w = os.pipe()
        os.set_blocking(chld_r, False)
        os.set_blocking(chld_w, False)
        signal.set_wakeup_fd(chld_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self._request_stop)
        signal.signal(signal.SIGINT, self._request_stop)
        agent_id = self.store.register_agent(self.queues)
        log.info("agent %s serving %s", os.getpid(), ", ".join(self.queues))
        idle_since = time.time()
        last_beat = 0.0
        try:
            while not self._stop:
                busy = self.step()
                now = time.time()
                if now - last_beat >= HEARTBEAT_S:
                    self.store.heartbeat(agent_id)
                    last_beat = now
                if busy:
                    idle_since = now
                elif self._idle_expired(idle_since, now) and self._exit_if_still_idle(lock_fd):
                    lock_fd = None
                    break
                ready, _, _ = select.select([wake_r, chld_r], [], [], self._timeout(busy))
                for fd in ready:
                    lockfile.drain(fd)
        finally:
            self.store.heartbeat(agent_id, stopped=True)
            if metrics is not None:
                metrics.shutdown()
                metrics.server_close()
            signal.set_wakeup_fd(-1)
            for fd in (wake_r, wake_w, chld_r, chld_w):
                os.close(fd)
            if lock_fd is not None:
                os.close(lock_fd)
            log.info("agent %s stopped", os.getpid())
        return 0

    def _serve_metrics(self) -> WSGIServer | None:
        if self.metrics_port is None:
            return None
        return serve_queue_metrics(self.root, self.store, self.metrics_host, self.metrics_port)

    def _request_stop(self, _signum: int, _frame: FrameType | None) -> None:
        # Running attempts live in sessions of their own and keep going; the
        # next agent re-adopts them from their handles.
        self._stop = True

    def _idle_expired(self, idle_since: float, now: float) -> bool:
        return self.idle_timeout_s is not None and now - idle_since >= self.idle_timeout_s

    def _exit_if_still_idle(self, lock_fd: int) -> bool:
        """Give up the agent lock only if no job arrived meanwhile. Submitters
        check for a live agent under the same spawn lock, after inserting their
        row, so a job is never left without an agent."""
        from nblaunch.agent.spawn import spawn_lock_path

        with lockfile.held(spawn_lock_path(self.root)):
            if self.store.has_work(self.queues):
                return False
            os.close(lock_fd)
            return True

    def _timeout(self, busy: bool) -> float:
        timeout = HEARTBEAT_S
        wake_at = self.store.next_wakeup(self.queues)
        if wake_at is not None:
            timeout = min(timeout, max(0.0, wake_at - time.time()))
        if not busy and self.idle_timeout_s is not None:
            timeout = min(timeout, self.idle_timeout_s)
        return timeout

    # -- one pass ----------------------------------------------------------

    def step(self) -> bool:
        """Reconcile running attempts, act on cancels, start what fits.
        Returns whether any job of these queues is waiting or running."""
        self._reload_if_changed()
        for job, attempt in self.store.active_attempts(self.queues):
            try:
                self._watch(job, attempt)
            except Exception:  # one attempt's trouble must not stop the others
                log.exception(
                    "watching %s attempt %d failed; retrying next pass", job.id, attempt.n
                )
        slots = {}
        for name, runner in self.runners.items():
            try:
                slots[name] = runner.slots()
            except Exception:  # one backend's trouble must not stop the others
                log.exception("queue %s: its runner cannot say its slots; skipped this pass", name)
        for name, queue_slots in slots.items():
            pool = queue_slots.device_pool
            sharing = [n for n, s in slots.items() if pool is not None and s.device_pool == pool]
            while (
                claimed := self.store.claim(name, queue_slots, sharing, os.getpid())
            ) is not None:
                self._start(*claimed)
            options = self.runners[name].options
            if options.preempt_lower_priority:
                plan = self.store.preemption_plan(name, queue_slots, sharing, options.min_runtime_s)
                for victim, waiting in plan:
                    self._preempt_for(victim, waiting)
        return self.store.has_work(self.queues)

    def _preempt_for(self, victim_id: str, waiting_id: str) -> None:
        """Preempt ``victim_id`` (SIGTERM → checkpoint → requeue → resume) so the
        higher-priority ``waiting_id`` can start."""
        victim = self.store.job(victim_id)
        attempt = self.store.attempts(victim.id)[-1]
        note = f"preempted for higher-priority job {waiting_id}"
        if attempt.handle is None or not self.store.mark_stop(
            victim.id, attempt.n, Stop.PRIORITY, note
        ):
            return
        log.info("job %s %s", victim.id, note)
        self.runners[victim.queue].preempt(attempt.handle)

    def _watch(self, job: JobRow, attempt: AttemptRow) -> None:
        runner = self.runners[job.queue]
        if attempt.handle is None:
            if attempt.agent_pid != os.getpid():
                self._adopt_or_requeue(job, attempt, runner)
            return
        if job.cancel_requested_at is not None and (job.id, attempt.n) not in self._cancelling:
            log.info("cancelling %s attempt %d", job.id, attempt.n)
            self._cancel(job, attempt, runner, runner.options.cancel_grace_s)
        if job.preempt_requested_at is not None and attempt.state is State.RUNNING:
            # Recorded as a stop, so that whichever agent is alive once the grace is
            # over kills an attempt that outlives it, as a spot reclaim would.
            if self.store.mark_stop(job.id, attempt.n, Stop.REQUESTED, "preempted on request"):
                log.info("preempting %s attempt %d", job.id, attempt.n)
                runner.preempt(attempt.handle)
            self.store.clear_preempt_request(job.id, job.preempt_requested_at)
        run = RunDir(attempt.run_dir)
        if attempt.stop_reason is None:
            self._enforce_limits(job, attempt, runner, run)
        else:
            self._see_stop_through(job, attempt, runner)
        status = runner.poll(attempt.handle, run)
        self._ingest(job, attempt)
        self._progress(job, attempt, runner, attempt.handle, status)

    def _progress(
        self,
        job: JobRow,
        attempt: AttemptRow,
        runner: Runner,
        handle: dict[str, Any],
        status: AttemptEnd | Pending | None,
        since: float | None = None,
    ) -> None:
        """Act on what the runner says of an attempt it holds: still waiting in its
        engine, running (since ``since``, default now), or ended. An attempt that
        ended before the agent saw it run is recorded as having run only when its
        end says it ran (it succeeded, or was preempted)."""
        if isinstance(status, Pending):
            if handle != attempt.handle or status.reason != attempt.pending_reason:
                self.store.record_pending(job.id, attempt.n, handle, status.reason)
            return
        end = None if status is None else _stopped_end(job, attempt, status)
        ran = end is None or State.STARTING not in sources_of(State(end.outcome.state))
        if attempt.state is State.STARTING and ran:
            external = handle.get("external_id")
            note = f"started by {runner.name} runner" + (f" as {external}" if external else "")
            self._running(job, handle, note, since)
        if end is None:
            return
        self._cancelling.discard((job.id, attempt.n))
        state = self._finish(job, attempt, end, handle)
        if end.engine_kept and state is not State.QUEUED:
            # No attempt follows: the engine must not start the job again.
            runner.cancel(handle, 0.0)

    def _adopt_or_requeue(self, job: JobRow, attempt: AttemptRow, runner: Runner) -> None:
        """An attempt claimed by an agent that died before recording its handle:
        adopt it if its runtime started, else requeue it once the runtime has had
        time to say it started (so one attempt never runs twice)."""
        run = RunDir(attempt.run_dir)
        handle = runner.recover(run, job.id, attempt.n)
        if handle is not None:
            log.info("job %s attempt %d adopted from an agent that died", job.id, attempt.n)
            status = runner.poll(handle, run)
            self._progress(job, attempt, runner, handle, status, since=attempt.started_at)
            return
        if time.time() - attempt.started_at >= ADOPT_GRACE_S:
            self._finish(job, attempt, AttemptEnd(Outcome.AGENT_DIED))

    def _enforce_limits(
        self, job: JobRow, attempt: AttemptRow, runner: Runner, run: RunDir
    ) -> None:
        """Stop an attempt past its time limit, or whose kernel never came up (the
        runtime gives up first; this catches a runtime that hangs itself)."""
        if attempt.running_at is None:
            return
        ran = time.time() - attempt.running_at
        start_limit = runner.options.kernel_start_timeout_s + KERNEL_START_MARGIN_S
        if job.timeout_s is not None and ran > job.timeout_s:
            reason, note = Stop.TIMEOUT, f"past its {job.timeout_s:g}s time limit; stopping"
        elif ran > start_limit and not runner.kernel_started(run):
            reason, note = Stop.KERNEL_START, f"no kernel after {start_limit:g}s; stopping"
        else:
            return
        if self.store.mark_stop(job.id, attempt.n, reason, note):
            log.info("job %s attempt %d %s", job.id, attempt.n, note)
            self._cancel(job, attempt, runner, runner.options.cancel_grace_s)

    def _see_stop_through(self, job: JobRow, attempt: AttemptRow, runner: Runner) -> None:
        """Make sure a stopped attempt ends: the agent that stopped it may have died
        before its kill, and a preempted job that ignores SIGTERM past the grace is
        killed (the next attempt resumes from its last checkpoint), unless its engine
        kills it at the end of a grace of its own."""
        if (job.id, attempt.n) in self._cancelling or attempt.stop_requested_at is None:
            return
        grace = runner.options.cancel_grace_s
        left = grace - (time.time() - attempt.stop_requested_at)
        if attempt.stop_reason in PREEMPTIONS and (left > 0 or runner.ends_preempted_itself):
            return
        log.info(
            "job %s attempt %d: seeing its %s stop through", job.id, attempt.n, attempt.stop_reason
        )
        self._cancel(job, attempt, runner, max(0.0, left))

    def _cancel(self, job: JobRow, attempt: AttemptRow, runner: Runner, grace_s: float) -> None:
        """Stop the attempt's processes (SIGTERM, SIGKILL after ``grace_s``), once."""
        assert attempt.handle is not None
        self._cancelling.add((job.id, attempt.n))
        runner.cancel(attempt.handle, grace_s)

    def _ingest(self, job: JobRow, attempt: AttemptRow) -> None:
        """Move the attempt's new metric lines into the store, while it runs and
        once more after it ends (so the tail is never lost)."""
        rows, offset = read_new(RunDir(attempt.run_dir).metrics, attempt.metrics_offset)
        if offset != attempt.metrics_offset:
            self.store.ingest_metrics(job.id, attempt.n, rows, offset)

    def _start(self, job: JobRow, attempt: AttemptRow) -> None:
        runner = self.runners[job.queue]
        launch = Launch(
            job_id=job.id,
            attempt=attempt.n,
            bundle=job.bundle,
            run=RunDir(attempt.run_dir),
            checkpoint_dir=JobDir(job.job_dir).checkpoints,
            gpu_ids=attempt.gpu_ids,
            env=self._job_env(job, attempt),
            previous=next(
                (a.handle for a in reversed(self.store.attempts(job.id)[:-1]) if a.handle), None
            ),
        )
        try:
            handle = runner.submit(launch)
        except Exception as exc:  # the runner's own failure ends this attempt, not the agent
            log.exception("runner %s could not start %s", runner.name, job.id)
            error = {"ename": type(exc).__name__, "evalue": str(exc), "cell_index": None}
            self._finish(job, attempt, AttemptEnd(Outcome.RUNNER_ERROR, error))
            return
        try:
            status = runner.poll(handle, launch.run)
        except Exception:  # the handle must be kept whatever the first look says
            log.exception("runner %s could not poll %s after starting it", runner.name, job.id)
            status = Pending("submitted")
        self._progress(job, attempt, runner, handle, status)
        log.info("started %s attempt %d", job.id, attempt.n)

    def _running(
        self, job: JobRow, handle: dict[str, Any], note: str, since: float | None = None
    ) -> None:
        """Record that the runner holds the attempt (by ``handle``), running since
        ``since`` (now by default): its time limit counts from then."""
        self.store.transition(
            job.id,
            State.RUNNING,
            note,
            attempt_state=State.RUNNING,
            attempt_fields={"handle": handle, "running_at": since or time.time()},
        )

    def _job_env(self, job: JobRow, attempt: AttemptRow) -> dict[str, str]:
        options = self.runners[job.queue].options
        spans, _ = held_spans(job, self.store.attempts(job.id), time.time())
        prior = job_cost(spans, job.gpus, options.price()).gpu_hours
        checkpoints = JobDir(job.job_dir).checkpoints
        return job_env(self.root, job.id, attempt.n, checkpoints, options, prior)

    def _finish(
        self,
        job: JobRow,
        attempt: AttemptRow,
        end: AttemptEnd,
        handle: dict[str, Any] | None = None,
    ) -> State | None:
        """Record how the attempt ended (and its ``handle``, when it ended before the
        store had it); the job's new state (None: it had moved on)."""
        job = self.store.job(job.id)
        fields = {"exit_code": end.exit_code, "outcome": end.outcome.value, "error": end.error}
        if handle is not None:
            fields["handle"] = handle
        decision = policy.decide(job, end, time.time())
        if decision.state is State.CANCELLED:
            attempt_state = State.CANCELLED
        else:
            attempt_state = State(end.outcome.state)
        try:
            self.store.transition(
                job.id,
                decision.state,
                decision.reason,
                attempt_state=attempt_state,
                attempt_fields=fields,
                job_fields=decision.fields,
            )
        except TransitionError:
            log.warning("job %s changed state while its attempt ended; left as it is", job.id)
            return None
        log.info("job %s attempt %d: %s -> %s", job.id, attempt.n, end.outcome, decision.state)
        return decision.state
