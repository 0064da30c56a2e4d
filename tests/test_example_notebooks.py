"""The example notebooks are the front door: every one of them runs in the tests.

Driver notebooks (they submit jobs themselves) run here under papermill in a
copy of ``notebooks/``; job notebooks run as nblaunch jobs in the tests named
in ``RUN_ELSEWHERE``, and a new notebook without a test fails the last test.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import papermill
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
DRIVERS = {
    "04_preemption_drill.ipynb": ["preempted attempt 2", "attempt 3: logged loss"],
    "05_sweep.ipynb": ["final loss"],
}
RUN_ELSEWHERE = {
    "01_quickstart.ipynb": "tests/runtime/test_preemption.py",
    "02_ddp.ipynb": "tests/trainers/test_strategies.py",
    "03_deepspeed.ipynb": "tests/trainers/test_strategies.py",
    "06_launch_magics.ipynb": "tests/extension/test_notebooks.py",
    "07_fsdp.ipynb": "tests/trainers/test_strategies.py",
}


@pytest.mark.parametrize("name", sorted(DRIVERS))
def test_driver_notebook_runs(name: str, nbl_home: Path, tmp_path: Path) -> None:
    work = tmp_path / "notebooks"
    shutil.copytree(
        NOTEBOOKS, work, ignore=shutil.ignore_patterns("tiny-gpt2", ".ipynb_checkpoints")
    )
    out = tmp_path / f"out-{name}"
    papermill.execute_notebook(
        str(work / name), str(out), cwd=str(work), progress_bar=False, kernel_name="python3"
    )
    text = out.read_text()
    for needle in DRIVERS[name]:
        assert needle in text, needle


def test_every_notebook_runs_in_some_test() -> None:
    present = {p.name for p in NOTEBOOKS.glob("*.ipynb")}
    assert present == set(DRIVERS) | set(RUN_ELSEWHERE), present ^ (
        set(DRIVERS) | set(RUN_ELSEWHERE)
    )
    for name, test_file in RUN_ELSEWHERE.items():
        assert name in (ROOT / test_file).read_text(), (name, test_file)
