"""The runtime's entry: set up one attempt, run its notebook, write ``result.json``.

Multi-process strategies start torchrun, and each rank runs the notebook with
a kernel of its own (``nblaunch.runtime.rank``).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import psutil

from nblaunch.runtime.contract import (
    BUNDLE_SPEC,
    WORKSPACE,
    DistributedEnv,
    Env,
    JobDir,
    Outcome,
    Result,
    RunDir,
    make_private_dir,
    open_private,
)
from nblaunch.runtime.environment import job_environment
from nblaunch.runtime.notebook import SignalForwarder, run_notebook
from nblaunch.runtime.records import MetricsTee, write_termination_message
from nblaunch.runtime.workspace import materialize


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(
            "usage: python -m nblaunch.runtime BUNDLE RUN_DIR (or FOLDER, as W&B Launch runs it)",
            file=sys.stderr,
        )
        return 2
    bundle, run = Path(argv[0]).resolve(), RunDir(Path(argv[1]).resolve())
    spec = json.loads((bundle / BUNDLE_SPEC).read_text())
    job = JobDir.of_run(run.path)
    job_id = os.environ.get(Env.JOB_ID) or job.path.name
    checkpoints = Path(os.environ.get(Env.CHECKPOINT_DIR) or job.checkpoints)
    return run_attempt(bundle, run, spec, job_id, checkpoints).outcome.exit_code


def run_attempt(
    bundle: Path,
    run: RunDir,
    spec: dict[str, Any],
    job_id: str,
    checkpoints: Path,
    wandb_run_id: str | None = None,
) -> Result:
    """Run the attempt in ``run`` and write its ``result.json`` (the first node's);
    ``wandb_run_id`` names the W&B run when an engine gave one (W&B Launch)."""
    # On a shared run folder, the first node speaks for the attempt; the others only
    # run their ranks (torchrun starts them once the first node has joined). A node
    # whose run folder is its own (a pod's) needs its own copy of the workspace.
    follower = int(spec["nodes"]) > 1 and DistributedEnv.from_env().node_rank > 0
    own_folder = bool(os.environ.get(Env.LOG_RECORDS))
    make_private_dir(run.path)
    me = psutil.Process()
    if not follower:
        run.record_runtime(me.pid, me.create_time())
    forwarder = SignalForwarder(run.preempt_marker)
    forwarder.install()
    started = time.time()
    prepare_environment(spec, run, job_id, checkpoints, wandb_run_id)
    if (own_folder or not follower) and run.workspace != bundle / WORKSPACE:
        materialize(bundle / WORKSPACE, run.workspace)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s nblaunch.runtime %(message)s")
    stop_sampling = threading.Event()
    from nblaunch.runtime.gpu import start_sampler

    start_sampler(stop_sampling)
    tee = MetricsTee(run).start() if own_folder and not follower else None
    try:
        if distributed(spec):
            from nblaunch.runtime.launch import run_distributed

            result = run_distributed(bundle, run, spec, forwarder)
        else:
            result = run_notebook(
                bundle, run.output, run.workspace, spec, forwarder, run.kernel_ready
            )
    finally:
        stop_sampling.set()
    result = replace(result, started_at=started, finished_at=time.time())
    termination_log = os.environ.get(Env.TERMINATION_LOG)
    if termination_log:
        # The engine reads the result from here (a pod's termination message) and every
        # node's exit status: a follower's failure is how the cluster learns of it.
        write_termination_message(Path(termination_log), result)
    elif follower:
        # On a shared run folder its ranks' results are in ranks/N for the first node to
        # read; a failing exit would have srun kill the first node before it records why.
        return Result(Outcome.SUCCEEDED)
    if not follower:
        result.write(run.result)
    if tee is not None:
        tee.finish(result)
    return result


def serve_warm() -> int:
    """Import papermill and its kernel machinery now, then run the one attempt the
    local runner sends as a JSON line on stdin (nothing, at end-of-file)."""
    import nbclient  # noqa: F401
    import papermill  # noqa: F401

    line = sys.stdin.readline()
    if not line:
        return 0
    order = json.loads(line)
    os.chdir(order["run_dir"])
    os.environ.clear()
    os.environ.update(order["env"])
    for fd, path in ((1, order["stdout"]), (2, order["stderr"])):
        target = open_private(path)
        os.dup2(target, fd)
        os.close(target)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    return main([order["bundle"], order["run_dir"]])


def prepare_environment(
    spec: dict[str, Any],
    run: RunDir,
    job_id: str,
    checkpoints: Path,
    wandb_run_id: str | None = None,
) -> None:
    checkpoints.mkdir(parents=True, exist_ok=True)
    # A wandb service of the process that started this one (an agent's, W&B Launch's)
    # is not the job's: sharing it, the notebook's run and the runtime's would collide.
    os.environ.pop("WANDB_SERVICE", None)
    os.environ.update(job_environment(run, job_id, checkpoints, wandb_run_id))
    os.environ.setdefault(Env.JOB_ID, job_id)
    os.environ.setdefault(Env.SUBMIT_DIR, spec["submit_dir"])
    options = spec.get("options") or {}
    os.environ[Env.STRATEGY] = spec["strategy"]
    os.environ[Env.GPUS] = str(spec["gpus"])
    os.environ[Env.NODES] = str(spec["nodes"])
    os.environ[Env.ATTEMPT_STARTED] = repr(time.time())
    if "zero" in options:
        os.environ[Env.ZERO_STAGE] = str(options["zero"])
    if options.get("offload"):
        os.environ[Env.OFFLOAD] = "1"


def distributed(spec: dict[str, Any]) -> bool:
    """Whether the job runs under torchrun. Any strategy does, even with one rank:
    DeepSpeed and FSDP set themselves up from the launcher's variables."""
    return spec["strategy"] != "none" or int(spec["nodes"]) > 1
