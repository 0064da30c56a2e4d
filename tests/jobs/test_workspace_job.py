"""A job carries its notebook's folder: helpers import, relative data paths read, and
what the notebook writes stays in the attempt, as in Jupyter."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nbformat

import nblaunch
from tests.conftest import make_notebook, run_cli

NOTEBOOK = (
    "import helper\n"
    "rows = open('data/x.csv').read().splitlines()\n"
    "total = helper.total(rows)\n"
    "%run other.ipynb\n"
    "open('out.txt', 'w').write(f'{total} {FROM_OTHER}')\n"
    "print('total', total)"
)


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    (folder / "data").mkdir(parents=True)
    (folder / "helper.py").write_text("def total(rows):\n    return sum(int(r) for r in rows)\n")
    (folder / "data" / "x.csv").write_text("1\n2\n39\n")
    other = nbformat.v4.new_notebook()
    other.cells.append(nbformat.v4.new_code_cell("FROM_OTHER = 'other-ran'"))
    nbformat.write(other, folder / "other.ipynb")
    make_notebook(folder / "train.ipynb", NOTEBOOK)
    return folder


def _state(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_the_job_runs_in_a_copy_of_its_notebooks_folder(nbl_home: Path, tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    before = _state(folder)
    done = run_cli("submit", str(folder / "train.ipynb"), "--wait", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    job = nblaunch.Job(data["id"])
    run = job.run()
    assert run is not None
    assert (run.workspace / "out.txt").read_text() == "42 other-ran"
    assert "total 42" in job.logs()
    assert _state(folder) == before  # the submit folder is never written to
    stored = json.loads((job.row.bundle / "workspace.json").read_text())
    assert set(stored["files"]) == {"helper.py", "data/x.csv", "other.ipynb", "train.ipynb"}

    # Resubmitting the unchanged folder stores no file twice.
    objects = sorted(p for p in (nbl_home / "objects").rglob("*") if p.is_file())
    again = nblaunch.submit(folder / "train.ipynb")
    assert again.wait(timeout=120).value == "succeeded", again.logs()
    assert sorted(p for p in (nbl_home / "objects").rglob("*") if p.is_file()) == objects


def test_a_workspace_over_the_limit_is_refused_until_ignored(
    nbl_home: Path, tmp_path: Path
) -> None:
    folder = _folder(tmp_path)
    tight = run_cli("submit", str(folder / "train.ipynb"), "--workspace-limit", "0.0001")
    assert tight.returncode == 2 and "over the 0.0001 MB limit" in tight.stderr, tight.stderr
    with open(folder / "data" / "weights.bin", "wb") as big:
        big.truncate(150_000_000)  # sparse: 150 MB on paper, nothing on disk
    refused = run_cli("submit", str(folder / "train.ipynb"))
    assert refused.returncode == 2, refused.stdout
    message = refused.stderr.strip()
    assert len(message.splitlines()) == 1 and "Traceback" not in message
    assert "over the 100 MB limit" in message and "data/weights.bin (150.0 MB)" in message
    assert ".nblaunchignore" in message
    assert not (nbl_home / "jobs").exists() or not any((nbl_home / "jobs").iterdir())

    (folder / ".nblaunchignore").write_text("*.bin\n")
    done = run_cli("submit", str(folder / "train.ipynb"), "--wait", "--json")
    assert done.returncode == 0, done.stderr
    run = nblaunch.Job(json.loads(done.stdout)["id"]).run()
    assert run is not None and not (run.workspace / "data" / "weights.bin").exists()
    assert (run.workspace / "out.txt").read_text() == "42 other-ran"
