"""Bad input: one line naming the problem and the fix, exit code 2, nothing written."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.conftest import make_notebook, run_cli, write_queues


def _nothing_written(home: Path) -> None:
    jobs = home / "jobs"
    assert not jobs.exists() or not any(jobs.iterdir()), list(jobs.iterdir())
    db = home / "nblaunch.db"
    if db.exists():
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 0


def _one_line_error(done, *needles: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture
def notebook(tmp_path: Path) -> Path:
    return make_notebook(tmp_path / "ok.ipynb", "print(x)", params="x = 1")


def test_missing_notebook(nbl_home: Path, tmp_path: Path) -> None:
    done = run_cli("submit", str(tmp_path / "nope.ipynb"))
    _one_line_error(done, "nope.ipynb", "does not exist")
    _nothing_written(nbl_home)


def test_file_that_is_not_a_notebook(nbl_home: Path, tmp_path: Path) -> None:
    bad = tmp_path / "notes.ipynb"
    bad.write_text("print('hello')\n")
    _one_line_error(run_cli("submit", str(bad)), "not a notebook")
    other = tmp_path / "data.ipynb"
    other.write_text('{"rows": [1, 2]}')
    _one_line_error(run_cli("submit", str(other)), "not a notebook")
    _nothing_written(nbl_home)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["-p", "x"], "-p"),
        (["-p", "1x", "3"], "'1x'"),
        (["-p", "x-y", "3"], "'x-y'"),
    ],
)
def test_malformed_parameter(nbl_home: Path, notebook: Path, args: list[str], needle: str) -> None:
    _one_line_error(run_cli("submit", str(notebook), *args), needle)
    _nothing_written(nbl_home)


def test_unknown_queue(nbl_home: Path, notebook: Path) -> None:
    _one_line_error(run_cli("submit", str(notebook), "--queue", "a100"), "'a100'", "queues.toml")
    _nothing_written(nbl_home)


def test_more_gpus_than_the_queue_has(nbl_home: Path, notebook: Path) -> None:
    write_queues(nbl_home, "[queues.local]\ngpus = 2\n")
    _one_line_error(run_cli("submit", str(notebook), "--gpus", "4"), "has 2 GPU", "--gpus")
    _nothing_written(nbl_home)


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("[queues.local\ngpus = 1\n", ["not valid TOML"]),
        ("[queues.local]\ngpuz = 1\n", ["unknown key 'gpuz'", "valid keys:", "gpus"]),
        ("[queues.local]\ngpus = -1\n", ["gpus"]),
        ("[queues.gpu]\nrunner = 'nope'\n", ["runner 'nope'", "valid runners"]),
    ],
)
def test_malformed_queues_file(
    nbl_home: Path, notebook: Path, text: str, needles: list[str]
) -> None:
    write_queues(nbl_home, text)
    _one_line_error(run_cli("submit", str(notebook)), "queues.toml", *needles)
    _nothing_written(nbl_home)


@pytest.mark.parametrize("command", ["show", "cancel", "logs"])
def test_unknown_job_id(nbl_home: Path, command: str) -> None:
    _one_line_error(run_cli(command, "deadbeef"), "no job 'deadbeef'", "nblaunch jobs")


def test_bad_priority(nbl_home: Path, notebook: Path) -> None:
    _one_line_error(run_cli("submit", str(notebook), "--priority", "urgent"), "priority 'urgent'")
    _nothing_written(nbl_home)
