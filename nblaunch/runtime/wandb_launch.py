"""The runtime as a W&B Launch entrypoint: ``python -m nblaunch.runtime .``.

The Launch agent downloads the job's code artifact (the bundle, exported by
``nblaunch.runners.wandb.job_files``) and runs the entrypoint in that folder
with ``WANDB_LAUNCH=True``, ``WANDB_RUN_ID``, ``WANDB_RESUME`` and the run
config in ``WANDB_CONFIG`` (split over ``WANDB_CONFIG_0``, ``_1``, … when long).
The notebook's parameters come from that config over the bundle's own; the
attempt's files (``output.ipynb``, ``result.json``) go to the working directory,
or to ``NBLAUNCH_RUN_DIR`` when set. As the attempt ends its result is written
into the W&B run's summary, with the output notebook as a run file: that is how
the wandb runner (and anyone looking at the run) learns how the notebook ended,
and a notebook that never calls ``wandb.init`` still has its run.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from nblaunch.runtime.contract import (
    BUNDLE_NOTEBOOK,
    BUNDLE_SPEC,
    WANDB_LAUNCH_ITEM,
    WANDB_RESULT_ITEM,
    WANDB_RESULT_KEY,
    Env,
    Result,
    RunDir,
)
from nblaunch.runtime.environment import quiet_wandb_settings, wandb_credentials
from nblaunch.runtime.execute import run_attempt

log = logging.getLogger(__name__)


def launch_attempt(folder: Path) -> int:
    """Run the job in ``folder`` as W&B Launch asks; the process's exit status."""
    bundle = folder.resolve()
    run = RunDir(Path(os.environ.get(Env.RUN_DIR) or os.getcwd()).resolve())
    spec = json.loads((bundle / BUNDLE_SPEC).read_text())
    spec["params"] = launch_parameters(bundle, spec["params"])
    run_id = os.environ.get("WANDB_RUN_ID")
    # A job nblaunch queued logs into run nbl-<job id>; one started from W&B names its own.
    job_id = os.environ.get(Env.JOB_ID) or (run_id or bundle.name).removeprefix("nbl-")
    # Launch gives each run a fresh folder: checkpoints last only as long as the run,
    # unless NBLAUNCH_CHECKPOINT_DIR names a lasting place (a mounted volume).
    checkpoints = Path(os.environ.get(Env.CHECKPOINT_DIR) or run.path / "checkpoints")
    run.workspace.mkdir(parents=True, exist_ok=True)  # W&B keeps no empty folder
    result = run_attempt(bundle, run, spec, job_id, checkpoints, run_id)
    if wandb_credentials():
        report(run, result)
    return result.outcome.exit_code


def launch_parameters(bundle: Path, params: dict[str, Any]) -> dict[str, Any]:
    """The bundle's parameters with the run config's values over them. Config keys the
    notebook does not take (a config copied from an earlier run holds everything its
    notebook put in ``wandb.config``) are left out, and said so."""
    if "WANDB_CONFIG" not in os.environ and "WANDB_CONFIG_0" not in os.environ:
        return params
    import papermill
    from wandb.sdk.launch import load_wandb_config

    config = dict(load_wandb_config())
    taken = set(papermill.inspect_notebook(str(bundle / BUNDLE_NOTEBOOK))) | set(params)
    ignored = sorted(k for k in config if k not in taken)
    if ignored:
        log.warning("run config keys that are not notebook parameters, ignored: %s", ignored)
    return {**params, **{k: v for k, v in config.items() if k in taken}}


def report(run: RunDir, result: Result) -> None:
    """Write the attempt's result and output notebook into its W&B run."""
    import wandb

    try:
        with wandb.init(
            resume="allow", dir=str(run.path), settings=quiet_wandb_settings()
        ) as wb_run:
            item = os.environ.get(WANDB_LAUNCH_ITEM)
            wb_run.summary[WANDB_RESULT_KEY] = {**result.to_dict(), WANDB_RESULT_ITEM: item}
            for path in (run.output, run.result):
                if path.exists():
                    wb_run.save(str(path), base_path=str(run.path), policy="now")
            wb_run.finish(exit_code=result.outcome.exit_code)
    except Exception as exc:  # the result is still in result.json and the exit status
        log.error("could not write the result into the W&B run: %s", exc)
