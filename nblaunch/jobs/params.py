"""Parameter names and values from the command line, from files and from the API."""

from __future__ import annotations

import keyword
from pathlib import Path
from typing import Any

from nblaunch.errors import SpecError


def is_name(text: str) -> bool:
    """A name a Python assignment can bind: an identifier that is not a keyword."""
    return name_problem(text) is None


def name_problem(name: Any) -> str | None:
    """Why ``name`` cannot name a parameter, with the fix; None when it can."""
    if not isinstance(name, str):
        return (
            f"parameter name {name!r} is not a string ({type(name).__name__}); name "
            "parameters with strings, e.g. {'lr': 0.1}"
        )
    if keyword.iskeyword(name):
        return (
            f"parameter name {name!r} is a Python keyword, so the job could not assign "
            f"it; rename it (e.g. {name}_) in the notebook and in what you pass"
        )
    if not name.isidentifier():
        return (
            f"parameter name {name!r} is not a Python identifier; use letters, digits "
            "and _, not starting with a digit (e.g. learning_rate)"
        )
    return None


def resolve_type(value: str) -> Any:
    """papermill's CLI rule for ``-p``: True/False/None, int, float, else the string.

    papermill keeps this in ``papermill.cli._resolve_type`` (private, and
    importing it costs the whole papermill import); the rule is restated here
    so ``nblaunch submit -p`` and ``papermill -p`` parse a value identically.
    """
    if value == "True":
        return True
    if value == "False":
        return False
    if value == "None":
        return None
    for convert in (int, float):
        try:
            return convert(value)
        except ValueError:
            pass
    return value


def load_params_file(path: Path) -> dict[str, Any]:
    """A YAML mapping of parameters, dates left as strings (as papermill's ``-f`` does)."""
    import yaml

    class NoDatesSafeLoader(yaml.SafeLoader):
        yaml_implicit_resolvers = {
            first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
            for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
        }

    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError(
            f"cannot read parameters file {path}: {exc.strerror}; check the path"
        ) from None
    try:
        data = yaml.load(text, Loader=NoDatesSafeLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise SpecError(
            f"parameters file {path} is not valid YAML ({exc.__class__.__name__}); fix it"
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SpecError(f"parameters file {path} must hold a mapping of name: value")
    return data
