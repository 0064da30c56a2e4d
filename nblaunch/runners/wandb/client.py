"""Every call the wandb runner makes to W&B, through wandb's public API.

The job's artifacts are logged by a short run of their own (as ``wandb job
create`` does), queued with ``launch_add``, and followed with ``wandb.Api``:
the queue item (``QueuedRun.state``), then the run (its state, the result the
runtime writes into its summary, and its history for the live curve).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nblaunch.errors import ConfigError, MissingDependencyError
from nblaunch.runners.wandb.job_files import FROZEN_REQUIREMENTS, JOB_FILE, job_description
from nblaunch.runners.wandb.options import WandbOptions
from nblaunch.runtime.contract import WANDB_RESULT_ITEM, WANDB_RESULT_KEY, Result
from nblaunch.runtime.environment import quiet_wandb_settings


def wandb_module() -> Any:
    """wandb, or the one line that says how to install it."""
    try:
        import wandb
    except ImportError:
        raise MissingDependencyError(
            "the wandb runner needs wandb: pip install 'nblaunch[train]'"
        ) from None
    return wandb


def publish_job(folder: Path, bundle: Path, options: WandbOptions, name: str) -> str:
    """Log ``folder`` (an exported job) as a code artifact and its job artifact;
    return the job's reference, ``entity/project/name:vN``."""
    wandb = wandb_module()
    with (
        tempfile.TemporaryDirectory(prefix="nblaunch-wandb-") as scratch,
        wandb.init(
            entity=options.entity,
            project=options.project,
            job_type="nblaunch-submit",
            dir=scratch,
            settings=quiet_wandb_settings(),
            reinit="create_new",
        ) as run,
    ):
        code = wandb.Artifact(f"nblaunch-code-{name}", type="code")
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.name != JOB_FILE:
                code.add_file(str(path), name=path.relative_to(folder).as_posix())
        run.log_artifact(code)
        code.wait()
        job_file = Path(scratch) / JOB_FILE
        job_file.write_text(json.dumps(job_description(bundle, code.id), indent=4))
        # wandb reserves the "job" type for its own job builder's class (what `wandb job
        # create` logs with); a plain Artifact of that type is refused.
        from wandb.sdk.artifacts._internal_artifact import InternalArtifact

        job = InternalArtifact(f"nblaunch-{name}", "job")
        job.add_file(str(job_file), name=JOB_FILE)
        job.add_file(str(folder / FROZEN_REQUIREMENTS), name=FROZEN_REQUIREMENTS)
        run.log_artifact(job, aliases=["latest"])
        job.wait()
        return f"{job.entity}/{job.project}/{job.name}"


def enqueue(
    options: WandbOptions,
    entity: str,
    job: str,
    params: dict[str, Any],
    priority: int,
    run_id: str,
) -> str:
    """Put the job into the W&B Launch queue; the queue item's id."""
    wandb_module()
    from wandb.sdk.launch import launch_add

    queued = launch_add(
        job=job,
        config={"overrides": {"run_config": params}},
        template_variables=options.template_variables or None,
        project=options.project,
        entity=entity,
        queue_name=options.launch_queue,
        resource=options.resource,
        resource_args=options.resource_args or None,
        run_id=run_id,
        priority=options.launch_priority(priority),
    )
    return str(queued.id)


@dataclass(frozen=True)
class RunView:
    """What W&B says of a job's run: its state, and the result its latest attempt
    wrote, with that attempt's queue item."""

    state: str
    result: Result | None
    item: str | None


class WandbClient:
    """One ``wandb.Api`` for the runner's reads, stops and deletes."""

    def __init__(self, options: WandbOptions) -> None:
        self.options = options
        self._api: Any = None

    @property
    def api(self) -> Any:
        if self._api is None:
            self._api = wandb_module().Api(timeout=30)
        return self._api

    @property
    def entity(self) -> str:
        entity = self.options.entity or self.api.default_entity
        if not entity:
            raise ConfigError(
                f"W&B names no default entity for this login; set entity in "
                f"[queues.{self.options.name}]"
            )
        return str(entity)

    def _queued(self, item_id: str) -> Any:
        options = self.options
        return self.api.queued_run(self.entity, options.project, options.launch_queue, item_id)

    def item_state(self, item_id: str) -> str | None:
        """The queue item's state (``pending``, ``leased``, ``claimed``, ``failed`` …);
        None when the queue no longer holds it."""
        try:
            return str(self._queued(item_id).state)
        except ValueError:
            return None

    def delete_item(self, item_id: str) -> None:
        self._queued(item_id).delete()

    def run(self, run_id: str) -> Any | None:
        """The job's W&B run as W&B has it now; None before it exists."""
        self.api.flush()  # wandb.Api keeps runs it has read; these change as they run
        try:
            return self.api.run(f"{self.entity}/{self.options.project}/{run_id}")
        except ValueError:  # wandb's RunNotFoundError: the run does not exist yet
            return None

    @staticmethod
    def view(run: Any) -> RunView:
        reported = dict(run.summary_metrics).get(WANDB_RESULT_KEY)
        reported = reported if isinstance(reported, dict) else {}
        try:
            result: Result | None = Result.from_dict(reported)
        except (KeyError, ValueError, TypeError):
            result = None
        item = reported.get(WANDB_RESULT_ITEM)
        return RunView(str(run.state), result, None if item is None else str(item))

    @staticmethod
    def history(run: Any, min_step: int) -> list[dict[str, Any]]:
        """The run's history rows from ``min_step`` on."""
        return [dict(row) for row in run.scan_history(min_step=min_step, use_cache=False)]

    def stop_run(self, run_id: str) -> None:
        run = self.run(run_id)
        if run is not None:
            run.stop()
