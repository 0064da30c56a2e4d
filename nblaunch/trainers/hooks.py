"""Training-library patches the job's kernel installs at start-up, before user code.

``transformers.Trainer`` gets the nblaunch callback and a default resume point,
so an unmodified HF notebook is preemption-safe. The patch waits for the
notebook to import the Trainer's own module: patching at ``import
transformers`` would pull torch into every job.
"""

from __future__ import annotations

from types import ModuleType

from nblaunch.runtime.imports import when_imported


def install() -> None:
    when_imported("transformers.trainer", _patch_trainer)


def _patch_trainer(trainer_module: ModuleType) -> None:
    from nblaunch.trainers.hf import patch_trainer

    patch_trainer(trainer_module.Trainer)
