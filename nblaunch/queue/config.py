"""Queues: ``$NBLAUNCH_HOME/queues.toml``, one ``[queues.NAME]`` table each.

A queue named ``local`` exists without any configuration. Keys are generic
(``gpus``, ``price_per_gpu_hour`` …) or runner-prefixed (``slurm_partition``);
an unknown key is an error that lists every valid one.
"""

from __future__ import annotations

import os
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nblaunch.errors import ConfigError, UnknownQueueError
from nblaunch.home import queues_file

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on 3.10
    import tomli as tomllib


class QueueConfig(BaseModel):
    """Keys every queue accepts, whatever its runner."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    runner: str = "local"
    gpus: int | None = Field(default=None, ge=0)
    gpu_type: str | None = None
    price_per_gpu_hour: float | None = Field(default=None, ge=0)
    spot_price_per_gpu_hour: float | None = Field(default=None, ge=0)
    preemptions_per_hour: float | None = Field(default=None, ge=0)
    cancel_grace_s: float = Field(default=30.0, ge=0)
    max_retries: int = Field(default=0, ge=0)


class LocalQueueConfig(QueueConfig):
    runner: Literal["local"] = "local"
    max_concurrent: int | None = Field(default=None, ge=1)

    def gpu_slots(self) -> int:
        return self.gpus if self.gpus is not None else detected_gpus()

    def cpu_slots(self) -> int:
        return self.max_concurrent or max(1, os.cpu_count() or 1)


CONFIG_CLASSES: dict[str, type[QueueConfig]] = {"local": LocalQueueConfig}


def register_config(runner: str, cls: type[QueueConfig]) -> None:
    """Runners outside this module register the keys their queues accept."""
    CONFIG_CLASSES[runner] = cls


@lru_cache(maxsize=1)
def detected_gpus() -> int:
    """GPUs on this machine: ``CUDA_VISIBLE_DEVICES`` if set, else NVML, else 0."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    try:
        import pynvml
    except ImportError:
        return 0
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return 0
    try:
        return int(pynvml.nvmlDeviceGetCount())
    finally:
        pynvml.nvmlShutdown()


def load_queues(root: Path) -> dict[str, QueueConfig]:
    """Every configured queue, plus ``local`` when the file does not define it."""
    path = queues_file(root)
    tables: dict[str, Any] = {}
    if path.exists():
        try:
            raw = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(
                f"{path} is not valid TOML ({exc}); fix the file or delete it"
            ) from None
        unknown_top = set(raw) - {"queues"}
        if unknown_top:
            raise ConfigError(
                f"{path}: unknown table {sorted(unknown_top)[0]!r}; "
                "put each queue under [queues.NAME]"
            )
        tables = raw.get("queues", {})
        if not isinstance(tables, dict):
            raise ConfigError(f"{path}: 'queues' must be a table of [queues.NAME] tables")
    queues = {name: _parse_queue(path, name, table) for name, table in tables.items()}
    queues.setdefault("local", LocalQueueConfig(name="local"))
    return queues


def get_queue(root: Path, name: str) -> QueueConfig:
    queues = load_queues(root)
    if name not in queues:
        raise UnknownQueueError(
            f"unknown queue {name!r}; known queues: {', '.join(sorted(queues))} "
            f"(add [queues.{name}] to {queues_file(root)})"
        )
    return queues[name]


def _parse_queue(path: Path, name: str, table: Any) -> QueueConfig:
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [queues.{name}] must be a table")
    runner = table.get("runner", "local")
    cls = CONFIG_CLASSES.get(runner)
    if cls is None:
        raise ConfigError(
            f"{path}: [queues.{name}] runner {runner!r} is unknown; "
            f"valid runners: {', '.join(sorted(CONFIG_CLASSES))}"
        )
    try:
        return cls(name=name, **table)
    except ValidationError as exc:
        raise ConfigError(_describe(path, name, cls, exc)) from None
    except TypeError:
        raise ConfigError(
            f"{path}: [queues.{name}] may not set 'name'; the table name is the queue name"
        ) from None


def _describe(path: Path, name: str, cls: type[QueueConfig], exc: ValidationError) -> str:
    err = exc.errors()[0]
    key = ".".join(str(p) for p in err["loc"])
    valid = ", ".join(k for k in cls.model_fields if k != "name")
    if err["type"] == "extra_forbidden":
        return f"{path}: [queues.{name}] has unknown key {key!r}; valid keys: {valid}"
    return f"{path}: [queues.{name}] {key}: {err['msg']} (got {err.get('input')!r})"
