"""Where jobs run: the runner interface, the built-in backends and the registry."""

from nblaunch.runners.base import AttemptEnd, Launch, QueueOptions, Runner, Slots
from nblaunch.runners.local import LocalOptions, LocalRunner

__all__ = ["AttemptEnd", "Launch", "LocalOptions", "LocalRunner", "QueueOptions", "Runner", "Slots"]
