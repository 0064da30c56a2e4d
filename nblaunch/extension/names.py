"""Names a job would miss: used by its code, defined only in the submitting kernel.

A ``%%launch`` cell runs in a fresh kernel, where only the parameters, the
setup cells and the cell itself define anything. pyflakes reports every name
the job's code uses without defining; the ones the user's kernel does define
are the ones that work in the notebook and would fail in the job, so the
magic refuses them before anything is queued.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Container, Iterable, Mapping
from typing import Any

from pyflakes import checker, messages

from nblaunch.errors import SpecError

__all__ = ["kernel_only_names", "refusal"]

# IPython's output-history names (_, __, _5, _i, _i5 ...) belong to the kernel's
# session, not to the user's code; a job has its own.
_HISTORY = re.compile(r"^(_{1,3}|_i{1,3}|_i?\d+)$")

# Magics that run their argument (or their cell) as Python code in the user
# namespace. IPython turns them into calls with the code in a string, where
# pyflakes would miss what it defines; the check reads that code directly.
_TIMED_CELL = re.compile(r"^\s*%%(time|timeit|prun|capture)\b[^\n]*\n?")
_TIMED_LINE = re.compile(r"^(\s*)%time\s+(.*)$", re.MULTILINE)


def python_source(source: str, transform: Callable[[str], str]) -> str:
    """``source`` as the Python a kernel runs, with timed code kept as code."""
    source = _TIMED_CELL.sub("", source, count=1)
    return transform(_TIMED_LINE.sub(r"\1\2", source))


def undefined_names(cells: Iterable[tuple[str, str]], transform: Callable[[str], str]) -> list[str]:
    """Names the code of ``cells`` (``(label, source)`` in run order) uses but never defines.

    ``transform`` turns IPython syntax (``%magic``, ``!cmd``) into Python; a
    cell that still does not parse raises ``SpecError`` naming the cell.
    """
    body: list[ast.stmt] = []
    offset = 0
    for label, source in cells:
        code = python_source(source, transform)
        try:
            tree = compile(
                code, label, "exec", flags=ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
            )
        except SyntaxError as exc:
            raise SpecError(
                f"{label} does not parse: {exc.msg} (line {exc.lineno}); fix it before launching"
            ) from None
        ast.increment_lineno(tree, offset)  # positions in the whole job, for ordering
        offset += code.count("\n") + 1
        body.extend(tree.body)
    # One module, so pyflakes sees definitions from earlier cells, in order.
    module = ast.Module(body=body, type_ignores=[])
    found = checker.Checker(module, filename="<job>").messages
    undefined = sorted(
        (m for m in found if isinstance(m, messages.UndefinedName)), key=lambda m: (m.lineno, m.col)
    )
    return list(dict.fromkeys(m.message_args[0] for m in undefined))


def kernel_only_names(
    cells: Iterable[tuple[str, str]],
    namespace: Mapping[str, Any],
    hidden: Container[str],
    transform: Callable[[str], str],
) -> list[str]:
    """Names the job uses that only the submitting kernel defines.

    ``hidden`` are the names the kernel itself put in ``namespace``
    (``In``, ``Out``, ``get_ipython`` ...): every kernel, the job's included,
    has those.
    """
    return [
        name
        for name in undefined_names(cells, transform)
        if name in namespace and name not in hidden and not _HISTORY.match(name)
    ]


def refusal(names: list[str]) -> SpecError:
    """The one-line error for ``names``, with the fix."""
    quoted = ", ".join(f"`{n}`" for n in names)
    if len(names) == 1:
        what, it = f"{quoted} is defined in this kernel but not in the job", "it"
        fix = f"mark the cell that defines {quoted} with %%launch_setup"
    else:
        what, it = f"{quoted} are defined in this kernel but not in the job", "them"
        fix = f"mark the cells that define {quoted} with %%launch_setup"
    return SpecError(
        f"%%launch: {what} (no setup cell, parameter or import defines {it}); {fix}, "
        f"pass {it} with -p, or add --force to submit anyway"
    )
