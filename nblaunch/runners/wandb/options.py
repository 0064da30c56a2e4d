"""A W&B Launch queue's options: which team queue takes the jobs, and how."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from nblaunch.options import check_levels, priority_level
from nblaunch.runners.base import QueueOptions


class WandbOptions(QueueOptions):
    """``[queues.NAME]`` with ``runner = "wandb"``: jobs go into a W&B Launch queue,
    whose own Launch agent runs them."""

    runner: Literal["wandb"] = "wandb"
    #: the W&B entity (team) of the queue and the runs; default: the login's own
    entity: str | None = None
    #: the W&B project the runs and the job artifacts go to
    project: str
    #: the W&B Launch queue's name; default: this queue's name
    queue: str | None = None
    #: the Launch resource (``local-process``, ``kubernetes`` …); default: the queue's
    resource: str | None = None
    #: the resource's arguments, as ``launch_add`` takes them
    resource_args: dict[str, Any] = {}
    #: values of the queue's template variables
    template_variables: dict[str, Any] = {}
    #: W&B Launch priority per nblaunch priority level (W&B runs lower numbers first)
    priority_map: dict[str, int] = {"critical": 0, "high": 1, "normal": 2, "low": 3}
    #: how often the agent asks W&B about an attempt (the queue item, the run, its history)
    poll_interval_s: float = Field(default=5.0, gt=0)

    @field_validator("priority_map")
    @classmethod
    def _check_levels(cls, mapping: dict[str, int]) -> dict[str, int]:
        check_levels(mapping)
        for level, value in mapping.items():
            if not 0 <= value <= 4:
                raise ValueError(f"W&B priority {value} for {level!r} must be between 0 and 4")
        return mapping

    @property
    def launch_queue(self) -> str:
        return self.queue or self.name

    def launch_priority(self, priority: int) -> int | None:
        """The W&B priority of a job of nblaunch ``priority`` (its level's, if mapped)."""
        return self.priority_map.get(priority_level(priority))
