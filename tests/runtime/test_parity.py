"""Outcome parity: nblaunch's final state and error fields match bare papermill's
for the same notebook and parameters."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import papermill
import pytest
from nbclient.exceptions import DeadKernelError

import nblaunch
from tests.conftest import make_notebook, write_queues

TYPED = {
    "an_int": 7,
    "a_float": 5e-05,
    "a_str": 'it\'s "quoted"; $(echo pwned) `id` && rm -rf / | cat > x',
    "a_list": [64, 64],
    "a_dict": {"lr": 0.1, "layers": [1, 2], "name": "x"},
    "a_bool": True,
    "a_none": None,
}

CASES: dict[str, tuple[list[str], str | None, dict[str, Any]]] = {
    "cell_error": (["x = 1", "raise ValueError('boom at cell 1')", "print('never')"], None, {}),
    "sys_exit_0": (["import sys\nsys.exit(0)", "print('after')"], None, {}),
    "sys_exit_1": (["import sys\nsys.exit(1)"], None, {}),
    "kills_own_kernel": (["import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"], None, {}),
    "keyboard_interrupt": (["raise KeyboardInterrupt"], None, {}),
    "prints_megabytes": (
        ["print('x' * 4_000_000)", "import sys\nsys.stderr.write('y' * 1_000_000)"],
        None,
        {},
    ),
    "magics_and_shell": (
        [
            "%time y = sum(range(10))",
            "!echo from-shell && exit 0",
            "out = !echo captured\nassert out == ['captured'], out",
        ],
        None,
        {},
    ),
    "typed_params": (
        [
            "assert an_int == 7 and type(an_int) is int\n"
            "assert a_float == 5e-05 and type(a_float) is float\n"
            f"assert a_str == {TYPED['a_str']!r}\n"
            "assert a_list == [64, 64]\n"
            "assert a_dict == {'lr': 0.1, 'layers': [1, 2], 'name': 'x'}\n"
            "assert a_bool is True and a_none is None"
        ],
        "an_int = 0\na_float = 0.0\na_str = ''\na_list = []\na_dict = {}\na_bool = False\na_none = 1",
        TYPED,
    ),
    "no_parameters_cell": (["assert lr == 0.5, lr"], None, {"lr": 0.5}),
    "writes_files": (
        [
            "open('written.txt', 'w').write('hello')",
            "import os\nassert os.path.exists('written.txt')",
        ],
        None,
        {},
    ),
    "wrong_param_type_fails": (["assert isinstance(n, int), type(n)"], "n = 1", {"n": "three"}),
}


def _papermill_outcome(nb: Path, out: Path, params: dict[str, Any], cwd: Path) -> dict[str, Any]:
    try:
        papermill.execute_notebook(
            str(nb), str(out), parameters=params, cwd=str(cwd), progress_bar=False
        )
    except papermill.PapermillExecutionError as exc:
        return {
            "state": "failed",
            "ename": exc.ename,
            "evalue": exc.evalue,
            "cell_index": exc.cell_index,
        }
    except DeadKernelError:
        return {"state": "failed", "ename": "DeadKernelError", "evalue": None, "cell_index": None}
    return {"state": "succeeded", "ename": None, "evalue": None, "cell_index": None}


def _nblaunch_outcome(job: nblaunch.Job) -> dict[str, Any]:
    state = job.wait(timeout=240)
    err = job.row.error or {}
    evalue = err.get("evalue") if err.get("ename") != "DeadKernelError" else None
    return {
        "state": state.value,
        "ename": err.get("ename"),
        "evalue": evalue,
        "cell_index": err.get("cell_index"),
    }


def test_outcomes_match_bare_papermill(nbl_home: Path, tmp_path: Path) -> None:
    write_queues(nbl_home, "[queues.local]\nmax_concurrent = 2\n")
    jobs: dict[str, nblaunch.Job] = {}
    notebooks: dict[str, Path] = {}
    for name, (cells, params_cell, params) in CASES.items():
        folder = tmp_path / name
        folder.mkdir()
        notebooks[name] = make_notebook(folder / f"{name}.ipynb", *cells, params=params_cell)
        jobs[name] = nblaunch.submit(notebooks[name], params=params, name=name)

    mismatches = {}
    for name, (_, _, params) in CASES.items():
        bare_dir = tmp_path / name / "bare"
        bare_dir.mkdir()
        expected = _papermill_outcome(notebooks[name], bare_dir / "out.ipynb", params, bare_dir)
        got = _nblaunch_outcome(jobs[name])
        if got != expected:
            mismatches[name] = (expected, got)
    assert not mismatches, mismatches

    # The outcomes are not all alike: the matrix above really exercises each path.
    states = {name: jobs[name].state.value for name in CASES}
    assert states["cell_error"] == "failed" and states["typed_params"] == "succeeded"
    assert jobs["kills_own_kernel"].to_dict()["error"]["ename"] == "DeadKernelError"
    assert jobs["cell_error"].to_dict()["error"] == {
        "ename": "ValueError",
        "evalue": "boom at cell 1",
        "cell_index": 1,
    }
    # Files a notebook writes to its working directory land in the attempt's workspace.
    run = jobs["writes_files"].run()
    assert run is not None and (run.workspace / "written.txt").read_text() == "hello"
    # A failing job keeps its output notebook, with the traceback in it.
    out = jobs["cell_error"].output_notebook
    assert out is not None and "boom at cell 1" in out.read_text()
    with pytest.raises(nblaunch.JobFailedError) as info:
        jobs["cell_error"].result()
    assert info.value.ename == "ValueError" and info.value.cell_index == 1
    assert os.path.exists(str(info.value.output_notebook))
