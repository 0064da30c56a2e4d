"""The local backend: attempts are process groups on this machine."""

from nblaunch.runners.local.options import LocalOptions
from nblaunch.runners.local.runner import LocalRunner

__all__ = ["LocalOptions", "LocalRunner"]
