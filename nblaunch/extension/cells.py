"""The notebook a ``%%launch`` cell becomes.

::

    [parameters]       lr = 5e-05 ...     tagged ``parameters``; papermill injects after it
    [nblaunch-setup]   each recorded %%launch_setup cell, in the order recorded
    [nblaunch-cell]    the body of the %%launch cell

It runs top to bottom in a fresh kernel: nothing in it refers to the
submitting kernel, which ``names`` checks before the job is queued.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from nblaunch.extension.setup_cells import SetupCell

__all__ = ["BODY_TAG", "SETUP_TAG", "code_cells", "job_notebook"]

SETUP_TAG = "nblaunch-setup"
BODY_TAG = "nblaunch-cell"
BODY_LABEL = "the %%launch cell"

KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def parameters_source(params: Mapping[str, Any]) -> str:
    """The parameters cell, written by papermill's own Python translator so it
    reads exactly like the cell papermill injects with the same values."""
    from papermill.translators import PythonTranslator

    return PythonTranslator.codify(dict(params)).rstrip("\n")


def job_notebook(
    body: str,
    setup: Iterable[SetupCell],
    params: Mapping[str, Any],
    metadata: Mapping[str, Any],
) -> dict[str, Any]:
    """The job's notebook (an ``nbformat`` v4 node, a ``dict``)."""
    import nbformat

    setup = list(setup)
    nb = nbformat.v4.new_notebook()
    parameters = nbformat.v4.new_code_cell(parameters_source(params))
    parameters.metadata["tags"] = ["parameters"]
    nb.cells.append(parameters)
    for cell in setup:
        node = nbformat.v4.new_code_cell(cell.source.rstrip("\n"))
        node.metadata["tags"] = [SETUP_TAG]
        node.metadata["nblaunch"] = {"setup": cell.label, "key": cell.key}
        nb.cells.append(node)
    node = nbformat.v4.new_code_cell(body.rstrip("\n"))
    node.metadata["tags"] = [BODY_TAG]
    nb.cells.append(node)
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata["nblaunch"] = {**metadata, "setup": [cell.label for cell in setup]}
    return nb


def code_cells(nb: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(label, source)`` of each code cell, labelled for error messages."""
    out = []
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        tags = cell.get("metadata", {}).get("tags", [])
        if "parameters" in tags:
            label = "the parameters cell"
        elif SETUP_TAG in tags:
            label = f"setup cell {cell['metadata']['nblaunch']['setup']!r}"
        elif BODY_TAG in tags:
            label = BODY_LABEL
        else:
            label = f"cell {cell.get('id', '?')}"
        source = cell["source"]
        out.append((label, source if isinstance(source, str) else "".join(source)))
    return out


def describe(nb: Mapping[str, Any]) -> str:
    """The notebook's code as text, one header line per cell (for ``--dry-run``)."""
    parts = []
    for index, (label, source) in enumerate(code_cells(nb)):
        parts.append(f"# ---- cell {index}: {label} ----\n{source}")
    return "\n".join(parts)
