"""The local queue's options and this machine's GPUs."""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Literal

from pydantic import Field

from nblaunch.runners.base import QueueOptions
from nblaunch.runtime.contract import visible_devices


class LocalOptions(QueueOptions):
    """``[queues.NAME]`` with ``runner = "local"`` (the default)."""

    runner: Literal["local"] = "local"
    max_concurrent: int | None = Field(default=None, ge=1)

    def cpu_slots(self) -> int:
        """Jobs that need no GPU that may run at once."""
        return self.max_concurrent or max(1, os.cpu_count() or 1)

    def device_ids(self) -> tuple[str, ...]:
        """The devices this queue hands out, as ``CUDA_VISIBLE_DEVICES`` spells them.

        The devices this machine shows (``CUDA_VISIBLE_DEVICES`` by index or
        UUID, else NVML), at most ``gpus`` of them when ``gpus`` is set: a
        queue never hands out a device the machine hides. Only where nothing
        shows any device does ``gpus`` number its slots ``0..gpus-1``.
        """
        shown = machine_devices()
        if self.gpus is None:
            return shown
        if shown:
            return shown[: self.gpus]
        return tuple(str(i) for i in range(self.gpus))


@lru_cache(maxsize=1)
def machine_devices() -> tuple[str, ...]:
    """GPUs this process may use: ``CUDA_VISIBLE_DEVICES`` if set, else NVML's, else none."""
    visible = visible_devices(os.environ.get("CUDA_VISIBLE_DEVICES"))
    if visible is not None:
        return tuple(visible)
    try:
        import pynvml
    except ImportError:
        return ()
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return ()
    try:
        return tuple(str(i) for i in range(int(pynvml.nvmlDeviceGetCount())))
    finally:
        pynvml.nvmlShutdown()
