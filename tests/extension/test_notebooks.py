"""The example notebooks that use the magics run end to end under papermill: their
kernel submits to the local queue, waits for the job and asserts on its output."""

from __future__ import annotations

from pathlib import Path

import papermill
import pytest

from tests.extension.conftest import outputs_text

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
MAGIC_NOTEBOOKS = ["06_launch_magics.ipynb"]


@pytest.mark.parametrize("name", MAGIC_NOTEBOOKS)
def test_magic_notebook_runs(name: str, nbl_home: Path, tmp_path: Path) -> None:
    out = tmp_path / name
    papermill.execute_notebook(
        str(NOTEBOOKS / name),
        str(out),
        cwd=str(tmp_path),
        progress_bar=False,
        kernel_name="python3",
    )
    text = outputs_text(out)
    assert "tag run-4 points 4" in text
    assert "nothing queued" in text
