"""Parameter sweeps for ``%launch_notebook --sweep name=v1,v2,...``.

Each ``--sweep`` is one axis; the jobs are the cartesian grid of the axes
(the first axis varies slowest), each with the fixed ``-p`` parameters plus
its point, all under one sweep id.
"""

from __future__ import annotations

import ast
import itertools
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from nblaunch.errors import SpecError
from nblaunch.extension.options import is_name, json_form, literal

__all__ = ["grid", "new_sweep_id", "parse_axis", "point_name"]

Axis = tuple[str, list[Any]]


def parse_axis(text: str) -> Axis:
    """``lr=1e-3,1e-4`` → ``("lr", [0.001, 0.0001])``.

    The values are read as one Python list when they parse as one (so
    ``layers=[64,64],[128]`` is two lists), else split at commas, each value
    a literal when it parses as one and a string otherwise (``opt=adam,sgd``).
    """
    name, sep, raw = text.partition("=")
    name, raw = name.strip(), raw.strip()
    if not sep or not is_name(name):
        raise SpecError(f"--sweep {text!r} is not name=v1,v2,...; write e.g. --sweep lr=1e-3,1e-4")
    if not raw:
        raise SpecError(f"--sweep {name}= has no values; write e.g. --sweep {name}=1,2,3")
    try:
        values = ast.literal_eval(f"[{raw}]")
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        parts = [part.strip() for part in raw.split(",")]
        if any(not part for part in parts):
            raise SpecError(
                f"--sweep {text!r} has an empty value; separate values with single commas"
            ) from None
        values = [literal(part) for part in parts]
    if not values:
        raise SpecError(f"--sweep {name}= has no values; write e.g. --sweep {name}=1,2,3")
    return name, list(json_form({name: values})[name])


def grid(fixed: Mapping[str, Any], axes: Sequence[Axis]) -> list[dict[str, Any]]:
    """Every point of the grid: ``fixed`` plus one value per axis."""
    names = [name for name, _ in axes]
    for name in names:
        if names.count(name) > 1:
            raise SpecError(f"--sweep {name} is given twice; put all its values in one --sweep")
        if name in fixed:
            raise SpecError(f"{name} is both a -p parameter and a --sweep axis; keep one")
    return [
        {**fixed, **dict(zip(names, values, strict=True))}
        for values in itertools.product(*(vals for _, vals in axes))
    ]


def new_sweep_id() -> str:
    return f"sweep-{secrets.token_hex(4)}"


def point_name(pattern: str, point: Mapping[str, Any], axes: Sequence[Axis], index: int) -> str:
    """A sweep job's name.

    ``pattern`` with ``{name}`` fields is filled from the point (and ``{i}``,
    its index); a pattern without fields gets the point appended, e.g.
    ``train[lr=0.001,bs=32]``. IPython expands ``{var}`` from the kernel
    before the magic sees its line, so write ``{{lr}}`` when the kernel has
    an ``lr`` of its own.
    """
    if "{" in pattern:
        try:
            return pattern.format_map({**point, "i": index})
        except (KeyError, IndexError, ValueError) as exc:
            known = ", ".join(["i", *point])
            raise SpecError(
                f"--name {pattern!r}: cannot fill {exc}; fields available: {known}"
            ) from None
    label = ",".join(f"{name}={point[name]}" for name, _ in axes)
    return f"{pattern}[{label}]" if label else pattern
