"""Every runner nblaunch knows: the built-ins, then the ``nblaunch.runners`` entry points.

The registry is complete before any queues file is read, so a queue may name
a plug-in's runner. A plug-in that fails to load is skipped with its reason
logged; a queue naming it gets that reason in one line, and every other
queue keeps working.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from importlib.metadata import entry_points

from nblaunch.errors import ConfigError, RunnerUnavailableError
from nblaunch.runners.base import Runner
from nblaunch.runners.kubernetes import KubernetesRunner
from nblaunch.runners.local import LocalRunner
from nblaunch.runners.slurm import SlurmRunner
from nblaunch.runners.wandb import WandbRunner

log = logging.getLogger(__name__)

GROUP = "nblaunch.runners"
BUILTIN: tuple[type[Runner], ...] = (LocalRunner, SlurmRunner, KubernetesRunner, WandbRunner)


@lru_cache(maxsize=1)
def _registry() -> tuple[dict[str, type[Runner]], dict[str, str]]:
    found: dict[str, type[Runner]] = {cls.name: cls for cls in BUILTIN}
    broken: dict[str, str] = {}
    for ep in entry_points(group=GROUP):
        if ep.name in found:
            broken[ep.name] = f"plug-in {ep.value} clashes with the built-in {ep.name!r} runner"
            continue
        try:
            cls = ep.load()
        except Exception as exc:  # a broken plug-in must not take the others down
            broken[ep.name] = f"plug-in {ep.value} failed to import: {type(exc).__name__}: {exc}"
            continue
        if not (isinstance(cls, type) and issubclass(cls, Runner)):
            broken[ep.name] = f"plug-in {ep.value} is not a nblaunch.runners.Runner subclass"
            continue
        found[ep.name] = cls
    for name, reason in broken.items():
        log.info("runner %r skipped: %s", name, reason)
    return found, broken


def runner_class(name: str) -> type[Runner]:
    """The runner called ``name``; ``ConfigError`` naming why when there is none."""
    found, broken = _registry()
    if name in found:
        return found[name]
    if name in broken:
        raise RunnerUnavailableError(
            f"runner {name!r} is unavailable: {broken[name]}; fix or reinstall the plug-in"
        )
    raise ConfigError(
        f"runner {name!r} is unknown; valid runners: {', '.join(sorted(found))} "
        f"(a plug-in registers in the {GROUP!r} entry-point group)"
    )
