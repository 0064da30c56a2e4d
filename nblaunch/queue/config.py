"""Queues: ``$NBLAUNCH_HOME/queues.toml``, one ``[queues.NAME]`` table each.

A queue named ``local`` exists without any configuration. Each table is
validated by its runner's ``Options`` model (generic keys such as ``gpus`` and
``price_per_gpu_hour`` plus the runner's own); the runner registry, plug-ins
included, is loaded first. An unknown key is an error that lists every valid one.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from nblaunch.errors import ConfigError, RunnerUnavailableError, UnknownQueueError
from nblaunch.home import queues_file
from nblaunch.runners.base import QueueOptions, Runner
from nblaunch.runners.registry import runner_class

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on 3.10
    import tomli as tomllib


Queues = dict[str, QueueOptions]
#: queue name -> why it cannot be used (its runner is a plug-in that failed to load)
Unavailable = dict[str, str]

_parsed: dict[Path, tuple[tuple[int, int] | None, Queues, Unavailable]] = {}


def load_queues(root: Path) -> Queues:
    """Every usable queue, plus ``local`` when the file does not define it.

    A queue whose runner is a broken plug-in is left out (``get_queue`` says
    why), so it never stops the others. The parsed file is kept until it
    changes: faces refresh many times a second.
    """
    return dict(_load(root)[0])


def unavailable_queues(root: Path) -> Unavailable:
    """Configured queues that cannot be used now, and why."""
    return dict(_load(root)[1])


def _load(root: Path) -> tuple[Queues, Unavailable]:
    path = queues_file(root)
    try:
        stat = path.stat()
        stamp: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
    except FileNotFoundError:
        stamp = None
    cached = _parsed.get(path)
    if cached is not None and cached[0] == stamp:
        return cached[1], cached[2]
    queues, unavailable = _read_queues(path)
    _parsed[path] = (stamp, queues, unavailable)
    return queues, unavailable


def _read_queues(path: Path) -> tuple[Queues, Unavailable]:
    tables: dict[str, Any] = {}
    if path.exists():
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"{path} is not UTF-8 text (byte {exc.start}: {exc.reason}); "
                "TOML files are UTF-8: save it as UTF-8"
            ) from None
        except OSError as exc:
            raise ConfigError(
                f"cannot read {path} ({exc.strerror}); make it readable by you"
            ) from None
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
    queues: Queues = {}
    unavailable: Unavailable = {}
    for name, table in tables.items():
        try:
            queues[name] = _parse_queue(path, name, table)
        except RunnerUnavailableError as exc:
            unavailable[name] = str(exc)
    if "local" not in queues and "local" not in unavailable:  # needs no configuration
        queues["local"] = runner_class("local").Options(name="local")
    return queues, unavailable


def get_queue(root: Path, name: str) -> QueueOptions:
    queues, unavailable = _load(root)
    if name in unavailable:
        raise ConfigError(f"queue {name!r} cannot be used: {unavailable[name]}")
    if name not in queues:
        raise UnknownQueueError(
            f"unknown queue {name!r}; known queues: {', '.join(sorted(queues))} "
            f"(add [queues.{name}] to {queues_file(root)})"
        )
    return queues[name]


def runner_for(options: QueueOptions) -> Runner:
    """A runner for the queue (no side effects until the agent calls ``start``)."""
    return runner_class(options.runner)(options)


def _parse_queue(path: Path, name: str, table: Any) -> QueueOptions:
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [queues.{name}] must be a table")
    runner = table.get("runner", "local")
    if not isinstance(runner, str):
        raise ConfigError(f'{path}: [queues.{name}] runner must be a name, e.g. runner = "local"')
    try:
        cls = runner_class(runner).Options
    except RunnerUnavailableError:
        raise
    except ConfigError as exc:
        raise ConfigError(f"{path}: [queues.{name}] {exc}") from None
    try:
        return cls(name=name, **table)
    except ValidationError as exc:
        raise ConfigError(_describe(path, name, cls, exc)) from None
    except TypeError:
        raise ConfigError(
            f"{path}: [queues.{name}] may not set 'name'; the table name is the queue name"
        ) from None


def _describe(path: Path, name: str, cls: type[QueueOptions], exc: ValidationError) -> str:
    err = exc.errors()[0]
    key = ".".join(str(p) for p in err["loc"])
    valid = ", ".join(k for k in cls.model_fields if k != "name")
    if err["type"] == "extra_forbidden":
        return f"{path}: [queues.{name}] has unknown key {key!r}; valid keys: {valid}"
    return f"{path}: [queues.{name}] {key}: {err['msg']} (got {err.get('input')!r})"
