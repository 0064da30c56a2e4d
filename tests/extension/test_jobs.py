"""The magics submit real jobs to the real local queue, where an agent runs them
with papermill in fresh kernels."""

from __future__ import annotations

import ast
import itertools
import json
from pathlib import Path

import nbformat
import pytest
from IPython.core.interactiveshell import InteractiveShell

from nblaunch.api import Job
from nblaunch.queue.states import State
from tests.conftest import make_notebook
from tests.extension.conftest import outputs_text, run

WAIT_S = 240


def test_setup_cell_import_and_function_run_in_the_job(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    run(ip, "%%launch_setup\nimport statistics\n\ndef double(x):\n    return 2 * x", cell_id="s1")
    job = run(
        ip,
        "%%launch --wait --name setup-check\n"
        "result = double(statistics.mean([1, 2, 3]))\n"
        "print('result is', result)\nassert result == 4",
    )
    assert isinstance(job, Job)
    assert job.state is State.SUCCEEDED
    bundle_nb = nbformat.read(job.row.bundle / "notebook.ipynb", as_version=4)
    assert bundle_nb.cells[1].source.startswith("import statistics")
    assert bundle_nb.metadata["nblaunch"]["setup"] == ["cell s1"]
    assert "result is 4" in outputs_text(job.output_notebook)
    capsys.readouterr()
    ip.run_line_magic("launch_logs", job.id)
    assert "result is 4" in capsys.readouterr().out
    ip.run_line_magic("launch_jobs", "--queue local")
    assert f"{job.id}  setup-check  local  succeeded" in capsys.readouterr().out


def test_typed_parameters_and_expansion_arrive_in_the_job(ip: InteractiveShell) -> None:
    run(ip, "i = 3")
    job = run(
        ip,
        "%%launch -p lr=5e-5 -p layers=[64,64] -p name=run-{i} --out job --wait\n"
        "assert type(lr) is float and lr == 5e-05, lr\n"
        "assert layers == [64, 64], layers\n"
        "assert name == 'run-3', name\n"
        "print(repr((lr, layers, name)))",
    )
    assert ip.user_ns["job"] is job
    assert job.state is State.SUCCEEDED, job.status_line()
    expected = {"lr": 5e-05, "layers": [64, 64], "name": "run-3"}
    # inside the job's notebook: the parameters cell holds the typed values
    bundle_nb = nbformat.read(job.row.bundle / "notebook.ipynb", as_version=4)
    params_cell = bundle_nb.cells[0]
    assert params_cell.metadata["tags"] == ["parameters"]
    assert _assigned(params_cell.source) == expected
    # and the executed output notebook saw them (papermill's injected cell too)
    output = nbformat.read(job.output_notebook, as_version=4)
    injected = [c for c in output.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert _assigned(injected[0].source) == expected
    assert "(5e-05, [64, 64], 'run-3')" in outputs_text(job.output_notebook)


def test_sweep_of_two_by_three_runs_six_jobs(ip: InteractiveShell, tmp_path: Path) -> None:
    nb = make_notebook(
        tmp_path / "train.ipynb",
        "assert isinstance(lr, float) and isinstance(bs, int)\nprint(f'point lr={lr} bs={bs}')",
        params="lr = 0.5\nbs = 1",
    )
    jobs = ip.run_line_magic(
        "launch_notebook", f"{nb} --sweep lr=1e-3,1e-4 --sweep bs=16,32,64 --out sweep --wait"
    )
    assert ip.user_ns["sweep"] is jobs
    assert len(jobs) == 6
    assert len({job.row.sweep_id for job in jobs}) == 1 and jobs[0].row.sweep_id
    points = [job.spec.params for job in jobs]
    assert points == [
        {"lr": lr, "bs": bs} for lr, bs in itertools.product([1e-3, 1e-4], [16, 32, 64])
    ]
    assert len({job.name for job in jobs}) == 6
    assert jobs[0].name == "train[lr=0.001,bs=16]"
    for job, point in zip(jobs, points, strict=True):
        assert job.state is State.SUCCEEDED, job.status_line()
        assert f"point lr={point['lr']} bs={point['bs']}" in outputs_text(job.output_notebook)


def test_cancel_magic(
    ip: InteractiveShell, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nb = make_notebook(tmp_path / "slow.ipynb", "import time\ntime.sleep(120)")
    job = ip.run_line_magic("launch_notebook", f"{nb} --no-widget")
    ip.run_line_magic("launch_cancel", job.id)
    assert f"job {job.id} (slow)" in capsys.readouterr().out
    assert job.wait(timeout=WAIT_S) is State.CANCELLED


def _assigned(source: str) -> dict[str, object]:
    """The ``name = literal`` assignments of a parameters cell."""
    values: dict[str, object] = {}
    for node in ast.parse(source).body:
        assert isinstance(node, ast.Assign)
        values[node.targets[0].id] = ast.literal_eval(node.value)  # type: ignore[attr-defined]
    return values


def test_failed_job_under_wait_raises_the_jobs_error(ip: InteractiveShell) -> None:
    from nblaunch.errors import JobFailedError

    with pytest.raises(JobFailedError) as info:
        run(ip, "%%launch --wait --out failed --no-widget\nraise ValueError('boom in the job')")
    assert info.value.ename == "ValueError" and info.value.evalue == "boom in the job"
    assert ip.user_ns["failed"].state is State.FAILED
    assert json.dumps(info.value.traceback)  # the job's own traceback travels with it
