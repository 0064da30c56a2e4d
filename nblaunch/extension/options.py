"""The options ``%%launch`` and ``%launch_notebook`` share, and how their values are read.

A ``-p`` value is a Python literal when it parses as one (``5e-5``, ``[64,64]``,
``{'a': 1}``, ``'quoted'``) and a string otherwise (``run-3``). IPython has
already expanded ``{var}`` and ``$var`` from the kernel namespace by the time
the magic sees its line, exactly as for its own magics; ``{{`` keeps a brace.
"""

from __future__ import annotations

import argparse
import ast
import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from IPython.core.error import UsageError
from IPython.core.magic_arguments import argument
from IPython.utils.process import arg_split

from nblaunch.errors import SpecError
from nblaunch.jobs.params import is_name
from nblaunch.options import magic_job_arguments

__all__ = [
    "collect_params",
    "is_name",
    "job_arguments",
    "json_form",
    "literal",
    "parse_line",
    "parse_param",
]

F = TypeVar("F", bound=Callable[..., Any])

# Listed in the order ``%%launch?`` shows them: the job options, then the magics' own.
_MAGIC_ARGUMENTS = (
    argument(
        "-p",
        dest="param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a parameter, repeatable; the value is a Python literal when it parses as "
        "one, else a string; {var} and $var expand from the kernel",
    ),
    argument(
        "--params",
        dest="params_var",
        metavar="VAR",
        help="a dict in the kernel namespace holding parameters (-p wins on a clash)",
    ),
    argument("--out", metavar="VAR", help="bind the Job handle to VAR in the kernel"),
    argument(
        "--wait",
        action="store_true",
        help="wait for the job; a job that does not succeed raises its own error",
    ),
    argument(
        "--dry-run",
        action="store_true",
        help="build the bundle in a temporary folder and show it; queue nothing",
    ),
    argument("--no-widget", action="store_true", help="show a text status instead of the widget"),
)


def job_arguments(func: F) -> F:
    """Add the options every job-submitting magic accepts to ``func``."""
    # magic_arguments lists arguments in reverse order of decoration.
    for decorate in reversed(_MAGIC_ARGUMENTS):
        func = decorate(func)
    return magic_job_arguments(func)


def parse_line(magic: Callable[..., Any], line: str, prog: str) -> argparse.Namespace:
    """Parse a magic's line with its ``magic_arguments`` parser; ``prog`` names
    the magic in errors (``%%launch``).

    The line is split POSIX-style (quotes removed) rather than with
    ``parse_argstring``'s non-POSIX split, which keeps quote characters inside
    tokens and breaks ``-p name='a b'`` in two.
    """
    parser = magic.parser  # type: ignore[attr-defined]
    try:
        argv = arg_split(line, posix=True, strict=True)
    except ValueError as exc:
        raise SpecError(f"{prog}: cannot split the line ({exc}); check its quotes") from None
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        raise SpecError(f"{prog}: {exc} (see {prog}? for usage)") from None
    out = getattr(args, "out", None)
    if out is not None and not is_name(out):
        raise SpecError(
            f"--out {out!r} is not a Python identifier; name a variable, e.g. --out job"
        )
    return args


def literal(text: str) -> Any:
    """``text`` as a Python literal when it parses as one, else the text itself."""
    text = text.strip()
    try:
        return ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return text


def parse_param(text: str, flag: str = "-p") -> tuple[str, Any]:
    """``name=value`` → ``(name, literal(value))``."""
    name, sep, raw = text.partition("=")
    name = name.strip()
    if not sep or not is_name(name):
        raise SpecError(f"{flag} {text!r} is not name=value; write e.g. {flag} lr=5e-5")
    return name, literal(raw)


def collect_params(args: argparse.Namespace, namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The job's parameters: the ``--params`` dict, then each ``-p`` over it.

    Values come back in their JSON form (tuples become lists), which is what
    papermill injects into the job, so the job sees exactly what was recorded.
    """
    params: dict[str, Any] = {}
    if args.params_var is not None:
        var = args.params_var
        if var not in namespace:
            raise SpecError(
                f"--params {var}: no variable {var!r} in the kernel; define a dict first"
            )
        value = namespace[var]
        if not isinstance(value, Mapping):
            raise SpecError(
                f"--params {var} is a {type(value).__name__}, not a dict; "
                "pass a dict of name: value"
            )
        for key in value:
            if not isinstance(key, str) or not is_name(key):
                raise SpecError(f"--params {var}: key {key!r} is not a Python identifier")
        params.update(value)
    params.update(parse_param(text) for text in args.param)
    return json_form(params)


def json_form(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` as they come back from JSON; one line naming a value that cannot."""
    out = {}
    for key, value in params.items():
        try:
            out[key] = json.loads(json.dumps(value))
        except (TypeError, ValueError):
            raise SpecError(
                f"parameter {key!r} = {value!r} is not JSON-serializable; pass numbers, "
                "strings, booleans, None, lists or dicts"
            ) from None
    return out
