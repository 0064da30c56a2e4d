"""A real IPython shell with nblaunch loaded, over an isolated ``$NBLAUNCH_HOME``."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config


@pytest.fixture(scope="session")
def shell(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InteractiveShell]:
    """One ``InteractiveShell`` for the session (IPython keeps it a singleton)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IPYTHONDIR", str(tmp_path_factory.mktemp("ipython")))
        config = Config()
        config.HistoryManager.hist_file = ":memory:"
        sh = InteractiveShell.instance(config=config)
        sh.run_line_magic("load_ext", "nblaunch")
        yield sh


@pytest.fixture
def ip(
    shell: InteractiveShell, nbl_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[InteractiveShell]:
    """The shell with an empty namespace, no setup cells, working in ``tmp_path``."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # --dry-run bundles land here
    shell.reset(new_session=False)
    shell.run_line_magic("launch_setup", "--clear")
    yield shell
    shell.run_line_magic("launch_setup", "--clear")
    shell.reset(new_session=False)


def run(shell: InteractiveShell, source: str, cell_id: str | None = None) -> Any:
    """Run ``source`` as a notebook cell would (transforms, ``{var}`` expansion,
    cell events); raise what the cell raised, else return its value."""
    result = shell.run_cell(source, store_history=True, cell_id=cell_id)
    error = result.error_before_exec or result.error_in_exec
    if error is not None:
        raise error
    return result.result


def nothing_queued(root: Path) -> bool:
    """No job row in the store and no job folder (bundle) under ``root``."""
    from nblaunch.api import store

    jobs = root / "jobs"
    return store(root).jobs() == [] and (not jobs.exists() or not any(jobs.iterdir()))


def outputs_text(nb_path: Path | str) -> str:
    """All stream and text/plain outputs of an executed notebook."""
    import nbformat

    nb = nbformat.read(nb_path, as_version=4)
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                parts.append(out["text"])
            elif "data" in out:
                parts.append(out["data"].get("text/plain", ""))
    return "".join(parts)
