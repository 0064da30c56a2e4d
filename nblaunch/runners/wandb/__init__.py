"""The W&B Launch runner: jobs go into a team's W&B Launch queue."""

from nblaunch.runners.wandb.runner import WandbRunner

__all__ = ["WandbRunner"]
