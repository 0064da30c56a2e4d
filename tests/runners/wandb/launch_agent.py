"""The team's W&B Launch agent, for one queue item: the same wandb code its agent
runs for a ``local-process`` resource (``LaunchAgent.task_run_job``): the launch
project from the item's run spec, the ack that claims the item, the job and code
artifacts fetched into the project folder, and wandb's local-process runner,
which runs the job's entrypoint there with the environment it builds. Only the
polling loop of the agent is left out (it needs the agent's own server calls)."""

from __future__ import annotations

import asyncio
from typing import Any


def run_item(item: dict[str, Any], entity: str, queue: str) -> Any:
    """Run queue item ``item`` (``FakeWandb.queue_items``) to its end; the launch project."""
    from wandb.sdk.launch import loader
    from wandb.sdk.launch._project_spec import LaunchProject
    from wandb.sdk.launch.api import LaunchApi
    from wandb.sdk.launch.utils import PROJECT_SYNCHRONOUS

    api = LaunchApi()
    project = LaunchProject.from_spec(dict(item["run_spec"]), api)
    project.queue_name = queue
    project.queue_entity = entity
    project.run_queue_item_id = item["id"]
    api.ack_run_queue_item(item["id"], project.run_id)
    project.fetch_and_validate_project()
    runner = loader.runner_from_config(
        "local-process", api, {PROJECT_SYNCHRONOUS: True}, None, None
    )  # type: ignore[arg-type]
    submitted = asyncio.run(runner.run(project, None))
    # wandb's runner reads the process's output to its end and never closes the pipe.
    submitted._thread.join(timeout=60)
    submitted._command_proc.stdout.close()
    return project
