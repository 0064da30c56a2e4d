"""Hooks installed in the job's kernel before any user code runs.

The runtime starts the kernel with ``--IPKernelApp.exec_lines`` calling
:func:`install`, so the job's notebook stays exactly the user's (cell indexes
match bare papermill's). Installed here:

- a SIGTERM handler: preemption sets a flag and runs ``on_preempt`` callbacks;
  cooperative training code (the HF callback, nblaunch's checkpoint helper, a
  loop polling :func:`preempted`) saves at its next step boundary and stops; a
  cell with no such code is interrupted at once, since nothing would save;
- an input transformer that turns every cell after a preemption into
  ``raise Preempted``, so the remaining cells do not run;
- a post-import patch: ``wandb.Run.log`` tees into the job's metrics (it must be
  wrapped before ``wandb.init`` binds ``wandb.log``).

``nblaunch.trainers.hooks`` installs the training-library patches (the HF
Trainer's callback and resume point) the same way, from the same start-up lines.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from nblaunch.runtime.contract import Env, RunDir, job_cost, replace_private
from nblaunch.runtime.imports import when_imported


class Preempted(Exception):
    """Raised in the kernel once the job has been told to stop (SIGTERM)."""


_state: dict[str, Any] = {"preempted": False, "cooperative": 0, "callbacks": []}


def preempted() -> bool:
    """True once this job has received SIGTERM; training loops check it each step."""
    _state["cooperative"] = max(_state["cooperative"], 1)
    return bool(_state["preempted"])


def on_preempt(fn: Callable[[], None]) -> Callable[[], None]:
    """Call ``fn`` (once) when the job is preempted; usable as a decorator."""
    _state["callbacks"].append(fn)
    _state["cooperative"] += 1
    return fn


def flagged() -> bool:
    """Whether SIGTERM has arrived, without announcing a cooperative reader."""
    return bool(_state["preempted"])


def cooperating(delta: int) -> None:
    """Training helpers that stop at a step boundary announce themselves here."""
    _state["cooperative"] = max(0, _state["cooperative"] + delta)


def _running_cell(frame: FrameType | None) -> bool:
    """Whether the signal interrupted a cell's code (or what it called). Raised
    anywhere else, in the kernel's own request handling, the exception would leave
    the request without a reply and papermill waiting for it forever; there the
    flag alone stops the notebook, at its next cell."""
    user_ns = _state.get("user_ns")
    if user_ns is None:
        return True
    while frame is not None:
        if frame.f_globals is user_ns:
            return True
        frame = frame.f_back
    return False


def _on_sigterm(_signum: int, frame: FrameType | None) -> None:
    first = not _state["preempted"]
    _state["preempted"] = True
    if first:
        for fn in list(_state["callbacks"]):
            try:
                fn()
            except Exception as exc:  # a user callback must not hide the preemption
                print(f"nblaunch: on_preempt callback {fn!r} failed: {exc!r}", file=sys.stderr)
    if not _state["cooperative"] and _running_cell(frame):
        raise Preempted("job preempted (SIGTERM) and nothing in this cell checkpoints; stopping")


def _skip_after_preemption(lines: list[str]) -> list[str]:
    if _state["preempted"]:
        return [
            "raise __import__('nblaunch.runtime.kernel').runtime.kernel.Preempted("
            "'job preempted; remaining cells skipped')\n"
        ]
    return lines


def _patch_wandb(wandb_run: Any) -> None:
    from nblaunch.runtime.metrics import log

    run_cls = wandb_run.Run
    original = run_cls.log
    if getattr(original, "_nblaunch", False):
        return

    def tee(
        self: Any, data: dict[str, Any], step: int | None = None, *args: Any, **kwargs: Any
    ) -> Any:
        result = original(self, data, step, *args, **kwargs)
        if not _state.get("wandb_run_recorded"):
            _state["wandb_run_recorded"] = True
            _record_wandb_run(self)
        # Under the HF Trainer the nblaunch callback records the same values with the
        # true global step; teeing them again would double every point.
        if not _state.get("trainer_logging"):
            log(data, step=step if step is not None else max(0, getattr(self, "step", 1) - 1))
        return result

    tee._nblaunch = True  # type: ignore[attr-defined]
    run_cls.log = tee
    original_finish = run_cls.finish

    def finish(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            self.summary.update(_cost_so_far())
        except Exception as exc:  # the run's own finish matters more than the cost line
            print(
                f"nblaunch: could not write the cost to the wandb summary: {exc!r}", file=sys.stderr
            )
        return original_finish(self, *args, **kwargs)

    run_cls.finish = finish


def _record_wandb_run(run: Any) -> None:
    """Say which W&B run this attempt logs into (``RunDir.wandb_run``)."""
    folder = os.environ.get(Env.RUN_DIR)
    if not folder or os.environ.get("RANK", "0") != "0":
        return
    try:
        where = {"id": run.id, "entity": run.entity, "project": run.project, "offline": run.offline}
        replace_private(RunDir(Path(folder)).wandb_run, json.dumps(where).encode())
    except Exception as exc:  # the run goes on; only `nblaunch sync` needs this
        print(f"nblaunch: could not record the wandb run: {exc!r}", file=sys.stderr)


def _cost_so_far() -> dict[str, float]:
    """GPU-hours (and dollars, when the queue has a price) over all attempts so far."""
    env = os.environ
    price = env.get(Env.PRICE_PER_GPU_HOUR)
    cost = job_cost(
        [(float(env.get(Env.ATTEMPT_STARTED, time.time())), time.time())],
        int(env.get(Env.GPUS, "0")) * int(env.get(Env.NODES, "1")),
        None if price is None else float(price),
        prior_gpu_hours=float(env.get(Env.PRIOR_GPU_HOURS, "0")),
    )
    summary = {"gpu_hours": cost.gpu_hours}
    if cost.usd is not None:
        summary["compute_cost_usd"] = cost.usd
    return summary


def install() -> None:
    """Install every hook; called once by the kernel at start-up."""
    if _state.get("installed"):
        return
    _state["installed"] = True
    signal.signal(signal.SIGTERM, _on_sigterm)
    ready = os.environ.get(Env.KERNEL_READY)
    if ready:  # the runtime and the agent tell a kernel that never came up by its absence
        with open(ready, "a"):
            pass
    marker = os.environ.get(Env.PREEMPT_MARKER)
    if marker and os.path.exists(marker):
        _state["preempted"] = True  # SIGTERM came while this kernel was starting
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:
        shell = None
    if shell is not None:
        _state["user_ns"] = shell.user_global_ns
        shell.input_transformers_post.append(_skip_after_preemption)
    # The submodule, not the package: importing wandb's package costs seconds.
    when_imported("wandb.sdk.wandb_run", _patch_wandb)
    if os.environ.get("WORLD_SIZE", "1") != "1":
        import atexit

        # torch's C++ teardown after a distributed run aborts now and then
        # ("terminate called without an active exception"); leave before it.
        atexit.register(_exit_now)


def _exit_now() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def set_trainer_logging(active: bool) -> None:
    _state["trainer_logging"] = active
