"""Atomic checkpoints for plain torch loops: model + optimizer + step (+ scheduler, RNG).

::

    ckpt = Checkpointer()                      # the job's NBLAUNCH_CHECKPOINT_DIR
    start = ckpt.load(model, optimizer)        # 0, or the step to continue from
    for step in range(start, max_steps):
        train_step()
        if ckpt.due(step + 1) or preempted():
            ckpt.save(step + 1, model, optimizer)
        if preempted():
            break

A save is written to a temporary folder and renamed into place with a marker,
so a kill during a save never leaves a corrupt newest checkpoint.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

from nblaunch.runtime import kernel
from nblaunch.runtime.contract import RESUME_MARKER, Env
from nblaunch.runtime.environment import newest_checkpoint


class Checkpointer:
    """Save and resume training state under ``folder`` (default: the job's checkpoint dir)."""

    def __init__(
        self, folder: str | os.PathLike[str] | None = None, every: int = 0, keep: int = 2
    ) -> None:
        default = os.environ.get(Env.CHECKPOINT_DIR, "checkpoints")
        self.folder = Path(folder or default)
        self.every = every
        self.keep = keep
        # A loop that saves through this helper stops at a step boundary on SIGTERM.
        kernel.cooperating(+1)

    def due(self, step: int) -> bool:
        return bool(self.every) and step % self.every == 0

    def save(
        self, step: int, model: Any, optimizer: Any = None, scheduler: Any = None, **extra: Any
    ) -> Path:
        import torch

        # Every rank gathers (a sharded model needs them all for a full state
        # dict); rank 0 writes.
        state = {
            "step": step,
            "model": _unwrap(model).state_dict(),
            "optimizer": optimizer.state_dict() if optimizer is not None else None,
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "rng": {"python": random.getstate(), "torch": torch.get_rng_state()},
            "extra": extra,
        }
        final = self.folder / f"step-{step}"
        if os.environ.get("RANK", "0") != "0":
            return final
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".step-{step}-", dir=self.folder))
        torch.save(state, tmp / "state.pt")
        with open(tmp / "state.pt", "rb") as fh:
            os.fsync(fh.fileno())  # on disk before the rename makes it the newest
        (tmp / RESUME_MARKER).touch()
        if final.exists():  # a re-save of the same step: swap, never leave a gap with none
            old = Path(tempfile.mkdtemp(prefix=f".old-step-{step}-", dir=self.folder))
            os.replace(final, old / final.name)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        self._prune()
        return final

    def load(self, model: Any, optimizer: Any = None, scheduler: Any = None) -> int:
        """Restore the newest complete checkpoint; return its step (0 when none)."""
        import torch

        path = Path(os.environ[Env.RESUME_FROM]) if os.environ.get(Env.RESUME_FROM) else None
        if path is None or not (path / "state.pt").exists():
            path = newest_checkpoint(self.folder)
        if path is None or not (path / "state.pt").exists():
            return 0
        state = torch.load(path / "state.pt", weights_only=False)
        _unwrap(model).load_state_dict(state["model"])
        if optimizer is not None and state["optimizer"] is not None:
            optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state["scheduler"] is not None:
            scheduler.load_state_dict(state["scheduler"])
        random.setstate(state["rng"]["python"])
        torch.set_rng_state(state["rng"]["torch"])
        return int(state["step"])

    def _prune(self) -> None:
        if self.keep <= 0:
            return
        done = sorted(
            (p for p in self.folder.glob("step-*") if (p / RESUME_MARKER).exists()),
            key=lambda p: int(p.name.split("-")[1]),
        )
        for old in done[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)


def _unwrap(model: Any) -> Any:
    return getattr(model, "module", model)
