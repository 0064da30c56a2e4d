"""Bad input, on every face: one line saying what is wrong and how to fix it, exit
code 2 (CLI), ``UsageError`` (magics) or an ``NBLaunchError`` (API), and nothing
written: no job row, no job folder, no stored object. No job ever runs here.

The CLI runs in-process through ``nblaunch.cli.main`` (the one place that turns
errors into exit codes); a few cases also run the real ``python -m nblaunch``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

import nblaunch
from nblaunch import api
from nblaunch.cli import main
from nblaunch.errors import (
    NBLaunchError,
    SpecError,
    TransitionError,
    UnknownJobError,
    UnknownQueueError,
)
from nblaunch.queue.states import State
from tests.conftest import make_notebook, run_cli, write_queues
from tests.extension.conftest import ip, run, shell  # noqa: F401 - fixtures for the magics
from tests.widgets.conftest import finish, start

Files = dict[str, "str | bytes"]

# -- what "nothing written" means ----------------------------------------------


def footprint(root: Path) -> tuple[Any, list[str], list[str]]:
    """Job rows in the store, and everything under jobs/ and objects/."""
    return _job_rows(root), _tree(root / "jobs"), _tree(root / "objects")


def _job_rows(root: Path) -> Any:
    db = root / "nblaunch.db"
    if not db.is_file() or db.stat().st_size == 0:
        return 0
    try:
        with contextlib.closing(sqlite3.connect(db)) as conn:
            return conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
    except sqlite3.OperationalError:  # no jobs table yet
        return 0
    except sqlite3.DatabaseError:  # not a database: it must stay byte for byte
        return db.read_bytes()


def _tree(folder: Path) -> list[str]:
    if not folder.is_dir():
        return []
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# -- the faces -------------------------------------------------------------------


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """Run ``nblaunch ARGV`` in-process; return its exit code and stderr."""
    capsys.readouterr()
    code: Any = 0
    try:
        main(list(argv))
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


def assert_one_line(code: int, err: str, *needles: str) -> None:
    assert code == 2, (code, err)
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("nblaunch: error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def assert_usage_error(info: pytest.ExceptionInfo[UsageError], *needles: str) -> None:
    message = str(info.value)
    assert "\n" not in message, message
    for needle in needles:
        assert needle in message, (needle, message)


# -- notebooks and files -----------------------------------------------------------

PY3 = {"name": "python3", "display_name": "Python 3", "language": "python"}


def notebook_json(metadata: Any, version: Any = 4) -> str:
    """A one-cell notebook (its cell tagged ``parameters``) with ``metadata`` as given."""
    cell = {
        "cell_type": "code",
        "execution_count": None,
        "id": "params",
        "metadata": {"tags": ["parameters"]},
        "outputs": [],
        "source": "x = 1",
    }
    return json.dumps(
        {"cells": [cell], "metadata": metadata, "nbformat": version, "nbformat_minor": 5}
    )


BAD_NOTEBOOKS: dict[str, str | bytes] = {
    "notes.ipynb": "print('hello')\n",
    "empty.ipynb": "",
    "latin1.ipynb": b'{"cells": [], "metadata": {"title": "caf\xe9"}}',
    "rows.ipynb": '{"rows": [1, 2]}',
    "list.ipynb": "[1, 2]",
    "cells-dict.ipynb": '{"cells": {}, "nbformat": 4}',
    "v3.ipynb": notebook_json({"kernelspec": PY3}, version=3),
    "no-version.ipynb": '{"cells": [], "metadata": {}}',
    "nosuchkernel.ipynb": notebook_json(
        {"kernelspec": {"name": "nosuchkernel", "display_name": "X", "language": "python"}}
    ),
    "no-kernelspec.ipynb": notebook_json({"language_info": {"name": "python"}}),
    "nameless-kernel.ipynb": notebook_json({"kernelspec": {"display_name": "Python 3"}}),
    "kernelspec-text.ipynb": notebook_json({"kernelspec": "python3"}),
    "no-language.ipynb": notebook_json({"kernelspec": {"name": "python3"}}),
}
BIG = {"big.bin": b"0" * 1_200_000}


def lay_out(folder: Path, files: Files) -> None:
    for rel, content in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


@pytest.fixture
def nbdir(tmp_path: Path) -> Path:
    """The notebook's folder (its workspace): ``nb.ipynb`` and the bad notebooks."""
    folder = tmp_path / "nbdir"
    folder.mkdir()
    make_notebook(folder / "nb.ipynb", "print(x)", params="x = 1")
    lay_out(folder, BAD_NOTEBOOKS)
    return folder


# -- CLI: submit --------------------------------------------------------------------


def case(
    case_id: str,
    argv: list[str],
    *needles: str,
    files: Files | None = None,
    queues: str | bytes | None = None,
) -> Any:
    return pytest.param(argv, needles, files or {}, queues, id=case_id)


NB = "{nb}/nb.ipynb"

SUBMIT_CASES = [
    # the notebook
    case("nb-missing", ["{nb}/nope.ipynb"], "nope.ipynb", "does not exist", "check the path"),
    case("nb-folder", ["{nb}"], "is a folder", "pass an .ipynb file"),
    case("nb-python-source", ["{nb}/notes.ipynb"], "not a notebook (not JSON)"),
    case("nb-empty-file", ["{nb}/empty.ipynb"], "not a notebook (not JSON)"),
    case("nb-not-utf8", ["{nb}/latin1.ipynb"], "not a notebook (not JSON)"),
    case("nb-json-object", ["{nb}/rows.ipynb"], "not a notebook (no cell list)"),
    case("nb-json-list", ["{nb}/list.ipynb"], "not a notebook (no cell list)"),
    case("nb-cells-not-a-list", ["{nb}/cells-dict.ipynb"], "no cell list"),
    case("nb-nbformat-3", ["{nb}/v3.ipynb"], "nbformat 3", "open and save it in JupyterLab"),
    case("nb-no-nbformat", ["{nb}/no-version.ipynb"], "nbformat None", "only nbformat 4"),
    case(
        "nb-unknown-kernel",
        ["{nb}/nosuchkernel.ipynb"],
        "kernel 'nosuchkernel'",
        "not installed here",
        "python3",
        "jupyter kernelspec list",
    ),
    case(
        "nb-no-kernelspec",
        ["{nb}/no-kernelspec.ipynb"],
        "names no kernel",
        "jupyter kernelspec list",
    ),
    case("nb-kernelspec-without-name", ["{nb}/nameless-kernel.ipynb"], "names no kernel"),
    case("nb-kernelspec-not-a-table", ["{nb}/kernelspec-text.ipynb"], "names no kernel"),
    case(
        "nb-no-language-with-params",
        ["{nb}/no-language.ipynb", "-p", "x", "2"],
        "names no language",
        "language_info",
    ),
    # parameters
    case("p-without-value", [NB, "-p", "x"], "Option '-p' requires 2 arguments"),
    case("p-leading-digit", [NB, "-p", "1x", "3"], "'1x'", "not a Python identifier"),
    case("p-dash", [NB, "-p", "x-y", "3"], "'x-y'", "not a Python identifier"),
    case("p-empty-name", [NB, "-p", "", "3"], "''", "not a Python identifier"),
    case("p-keyword", [NB, "-p", "class", "1"], "'class'", "Python keyword", "class_"),
    case("p-keyword-None", [NB, "-p", "None", "1"], "'None'", "Python keyword"),
    case("r-keyword", [NB, "-r", "lambda", "x"], "'lambda'", "Python keyword"),
    case("f-missing", [NB, "-f", "{nb}/nope.yaml"], "cannot read parameters file", "nope.yaml"),
    case("f-folder", [NB, "-f", "{nb}"], "cannot read parameters file", "check the path"),
    case(
        "f-not-yaml",
        [NB, "-f", "{nb}/p.yaml"],
        "not valid YAML",
        files={"p.yaml": "a: [1, 2\n"},
    ),
    case(
        "f-not-a-mapping",
        [NB, "-f", "{nb}/p.yaml"],
        "must hold a mapping",
        files={"p.yaml": "- 1\n- 2\n"},
    ),
    case(
        "f-keyword-key",
        [NB, "-f", "{nb}/p.yaml"],
        "'if'",
        "Python keyword",
        files={"p.yaml": "if: 1\n"},
    ),
    case(
        "f-number-key",
        [NB, "-f", "{nb}/p.yaml"],
        "parameter name 1 is not a string",
        files={"p.yaml": "1: 2\n"},
    ),
    case(
        "f-unserializable-value",
        [NB, "-f", "{nb}/p.yaml"],
        "not JSON-serializable",
        files={"p.yaml": "s: !!set {a: null}\n"},
    ),
    # job options
    case("queue-unknown", [NB, "--queue", "a100"], "unknown queue 'a100'", "queues.toml"),
    case("gpus-negative", [NB, "--gpus", "-1"], "'--gpus'", "-1 is not in the range"),
    case("gpus-not-a-number", [NB, "--gpus", "two"], "'--gpus'", "'two'"),
    case(
        "gpus-over-capacity",
        [NB, "--gpus", "4"],
        "has 2 GPU",
        "--gpus",
        queues="[queues.local]\ngpus = 2\n",
    ),
    case("nodes-zero", [NB, "--nodes", "0"], "'--nodes'", "0 is not in the range"),
    case("priority-word", [NB, "--priority", "urgent"], "priority 'urgent'", "low, normal"),
    case("priority-float", [NB, "--priority", "1.5"], "priority '1.5'", "an integer"),
    case("strategy-unknown", [NB, "--strategy", "zero"], "'zero' is not one of", "deepspeed"),
    case("zero-without-deepspeed", [NB, "--zero", "2"], "add --strategy deepspeed"),
    case("offload-without-deepspeed", [NB, "--offload"], "add --strategy deepspeed"),
    case(
        "zero-stage-5",
        [NB, "--strategy", "deepspeed", "--zero", "5"],
        "'--zero'",
        "0<=x<=3",
    ),
    case("max-retries-negative", [NB, "--max-retries", "-1"], "'--max-retries'"),
    case("workspace-limit-zero", [NB, "--workspace-limit", "0"], "workspace_limit_mb"),
    case("workspace-limit-text", [NB, "--workspace-limit", "big"], "'--workspace-limit'"),
    case("unknown-option", [NB, "--bogus"], "No such option '--bogus'", "nblaunch submit --help"),
    case("no-notebook", [], "Missing argument 'NOTEBOOK'"),
    case(
        "workspace-over-flag-limit",
        [NB, "--workspace-limit", "1"],
        "over the 1 MB limit",
        "big.bin",
        ".nblaunchignore",
        files=BIG,
    ),
    case(
        "workspace-over-queue-limit",
        [NB],
        "over the 1 MB limit",
        "workspace_limit_mb in the queue",
        files=BIG,
        queues="[queues.local]\nworkspace_limit_mb = 1\n",
    ),
    # queues.toml
    case("toml-syntax", [NB], "queues.toml", "not valid TOML", queues="[queues.local\ngpus = 1\n"),
    case(
        "toml-unknown-key",
        [NB],
        "queues.toml",
        "unknown key 'gpuz'",
        "valid keys:",
        "gpus",
        queues="[queues.local]\ngpuz = 1\n",
    ),
    case(
        "toml-wrong-type",
        [NB],
        "queues.toml",
        "gpus",
        "(got 'two')",
        queues='[queues.local]\ngpus = "two"\n',
    ),
    case(
        "toml-negative-gpus",
        [NB],
        "queues.toml",
        "gpus",
        "(got -1)",
        queues="[queues.local]\ngpus = -1\n",
    ),
    case(
        "toml-unknown-runner",
        [NB],
        "queues.toml",
        "runner 'nope'",
        "valid runners",
        queues="[queues.gpu]\nrunner = 'nope'\n",
    ),
    case(
        "slurm-no-run-root",
        [NB, "--queue", "hpc"],
        "queues.toml",
        "run_root",
        queues="[queues.hpc]\nrunner = 'slurm'\n",
    ),
    case(
        "slurm-relative-run-root",
        [NB, "--queue", "hpc"],
        "queues.toml",
        "must be an absolute path",
        queues="[queues.hpc]\nrunner = 'slurm'\nrun_root = 'runs'\n",
    ),
    case(
        "slurm-reserved-sbatch-arg",
        [NB, "--queue", "hpc"],
        "queues.toml",
        "--output is set by nblaunch",
        queues="[queues.hpc]\nrunner = 'slurm'\nrun_root = '/tmp/r'\n"
        "extra_sbatch_args = ['--output=x']\n",
    ),
    case(
        "slurm-reserved-short-or-abbreviated",
        [NB, "--queue", "hpc"],
        "queues.toml",
        "-ologs (--output) is set by nblaunch",
        queues="[queues.hpc]\nrunner = 'slurm'\nrun_root = '/tmp/r'\n"
        "extra_sbatch_args = ['-ologs']\n",
    ),
    case(
        "slurm-reserved-abbreviated",
        [NB, "--queue", "hpc"],
        "queues.toml",
        "--out (--output) is set by nblaunch",
        queues="[queues.hpc]\nrunner = 'slurm'\nrun_root = '/tmp/r'\n"
        "extra_sbatch_args = ['--out=x']\n",
    ),
    case(
        "slurm-sbatch-args-one-string",
        [NB, "--queue", "hpc"],
        "queues.toml",
        "is not one sbatch option",
        queues="[queues.hpc]\nrunner = 'slurm'\nrun_root = '/tmp/r'\n"
        "extra_sbatch_args = ['--exclusive --constraint=a100', 'a100']\n",
    ),
    case(
        "slurm-unknown-priority-level",
        [NB, "--queue", "hpc"],
        "queues.toml",
        "unknown priority level 'urgent'",
        queues="[queues.hpc]\nrunner = 'slurm'\nrun_root = '/tmp/r'\n"
        "priority_nice = {urgent = 0}\n",
    ),
    case(
        "slurm-too-many-nodes",
        [NB, "--queue", "hpc", "--nodes", "4"],
        "at most 2 node(s)",
        "--nodes to 2",
        queues="[queues.hpc]\nrunner = 'slurm'\nrun_root = '/tmp/r'\nnodes = 2\n",
    ),
    case(
        "slurm-too-many-gpus",
        [NB, "--queue", "hpc", "--gpus", "8"],
        "4 GPU(s) per node",
        queues="[queues.hpc]\nrunner = 'slurm'\nrun_root = '/tmp/r'\ngpus_per_node = 4\n",
    ),
    case(
        "toml-runner-not-a-name",
        [NB],
        "runner must be a name",
        queues="[queues.local]\nrunner = 3\n",
    ),
    case(
        "toml-unknown-table",
        [NB],
        "unknown table 'queue'",
        "[queues.NAME]",
        queues="[queue.local]\ngpus = 1\n",
    ),
    case("toml-queues-not-a-table", [NB], "'queues' must be a table", queues="queues = 1\n"),
    case(
        "toml-queue-not-a-table",
        [NB],
        "[queues.local] must be a table",
        queues="[queues]\nlocal = 1\n",
    ),
    case(
        "toml-name-key",
        [NB],
        "may not set 'name'",
        queues="[queues.local]\nname = 'other'\n",
    ),
    case(
        "toml-max-concurrent-zero",
        [NB],
        "max_concurrent",
        "(got 0)",
        queues="[queues.local]\nmax_concurrent = 0\n",
    ),
    case(
        "toml-negative-price",
        [NB],
        "price_per_gpu_hour",
        queues="[queues.local]\nprice_per_gpu_hour = -1\n",
    ),
    case(
        "toml-zero-workspace-limit",
        [NB],
        "workspace_limit_mb",
        queues="[queues.local]\nworkspace_limit_mb = 0\n",
    ),
    # fixed by the store/home work: a queues file that is not UTF-8
    case("toml-not-utf8", [NB], "queues.toml", queues=b"[queues.local]\ngpus = 1 # \xff\xfe\n"),
]


@pytest.mark.parametrize(("argv", "needles", "files", "queues"), SUBMIT_CASES)
def test_submit_refuses(
    nbl_home: Path,
    nbdir: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    needles: tuple[str, ...],
    files: Files,
    queues: str | bytes | None,
) -> None:
    lay_out(nbdir, files)
    if isinstance(queues, bytes):
        (nbl_home / "queues.toml").write_bytes(queues)
    elif queues is not None:
        write_queues(nbl_home, queues)
    before = footprint(nbl_home)
    code, err = cli(capsys, "submit", *(a.format(nb=nbdir) for a in argv))
    assert_one_line(code, err, *needles)
    assert footprint(nbl_home) == before


# -- CLI: the other commands -------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "needles", "queues"),
    [
        pytest.param(["jobs", "--queue", "nope"], ["unknown queue 'nope'"], None, id="jobs-queue"),
        pytest.param(
            ["jobs", "--state", "bogus"], ["'bogus' is not one of"], None, id="jobs-state"
        ),
        pytest.param(["jobs", "--limit", "0"], ["'--limit'"], None, id="jobs-limit-zero"),
        pytest.param(["queues"], ["not valid TOML"], "[queues.a\n", id="queues-broken-toml"),
        pytest.param(["show"], ["Missing argument 'JOB_ID'"], None, id="show-without-id"),
        pytest.param(["show", ""], ["no job ''", "nblaunch jobs"], None, id="show-empty-id"),
        pytest.param(["cancel"], ["Missing argument 'JOB_ID'"], None, id="cancel-without-id"),
        pytest.param(["estimate", "--tokens", "1B"], ["--params"], None, id="estimate-no-params"),
        pytest.param(["nosuchcommand"], ["No such command 'nosuchcommand'"], None, id="command"),
        *(
            pytest.param(
                [command, "deadbeef"],
                ["no job 'deadbeef'", "nblaunch jobs"],
                None,
                id=f"{command}-unknown-id",
            )
            for command in ("show", "cancel", "logs", "metrics", "preempt")
        ),
    ],
)
def test_command_refuses(
    nbl_home: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    needles: list[str],
    queues: str | None,
) -> None:
    if queues is not None:
        write_queues(nbl_home, queues)
    before = footprint(nbl_home)
    code, err = cli(capsys, *argv)
    assert_one_line(code, err, *needles)
    assert footprint(nbl_home) == before


@pytest.mark.parametrize(
    ("argv", "needles", "queues"),
    [
        pytest.param(["submit", "{nb}/nope.ipynb"], ["does not exist"], None, id="missing-nb"),
        pytest.param(["submit", NB], ["not valid TOML"], "[queues.a\n", id="broken-toml"),
        pytest.param(["show", "deadbeef"], ["no job 'deadbeef'"], None, id="unknown-id"),
    ],
)
def test_the_real_entry_point_refuses(
    nbl_home: Path, nbdir: Path, argv: list[str], needles: list[str], queues: str | None
) -> None:
    """``python -m nblaunch``, as a terminal runs it."""
    if queues is not None:
        write_queues(nbl_home, queues)
    before = footprint(nbl_home)
    done = run_cli(*(a.format(nb=nbdir) for a in argv))
    assert done.stdout == ""
    assert_one_line(done.returncode, done.stderr, *needles)
    assert footprint(nbl_home) == before


# -- the store and $NBLAUNCH_HOME (fixed by the store/home work) -------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["submit", NB], id="submit"),
        pytest.param(["jobs"], id="jobs"),
        pytest.param(["show", "deadbeef"], id="show"),
    ],
)
@pytest.mark.parametrize("content", [b"not a database " * 100, b""], ids=["corrupt", "empty"])
def test_damaged_store(
    nbl_home: Path,
    nbdir: Path,
    capsys: pytest.CaptureFixture[str],
    request: pytest.FixtureRequest,
    argv: list[str],
    content: bytes,
) -> None:
    """A store file that is not SQLite, or is empty: one line naming it."""
    db = nbl_home / "nblaunch.db"
    db.write_bytes(content)
    request.addfinalizer(lambda: db.unlink(missing_ok=True))  # before nbl_home's teardown
    before = footprint(nbl_home)
    code, err = cli(capsys, *(a.format(nb=nbdir) for a in argv))
    assert_one_line(code, err, str(db))
    assert footprint(nbl_home) == before


@pytest.mark.parametrize(
    "argv",
    [pytest.param(["submit", NB], id="submit"), pytest.param(["jobs"], id="jobs")],
)
def test_home_that_cannot_be_created(
    nbl_home: Path,
    nbdir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
) -> None:
    blocked = nbdir / "nb.ipynb" / "home"  # under a file
    monkeypatch.setenv("NBLAUNCH_HOME", str(blocked))
    code, err = cli(capsys, *(a.format(nb=nbdir) for a in argv))
    assert_one_line(code, err, str(blocked))
    assert not blocked.exists()


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes anywhere")
def test_read_only_home(nbl_home: Path, nbdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nbl_home.chmod(0o555)
    try:
        code, err = cli(capsys, "submit", str(nbdir / "nb.ipynb"))
        assert_one_line(code, err, str(nbl_home))
        assert footprint(nbl_home) == (0, [], [])
    finally:
        nbl_home.chmod(0o755)


# -- API ------------------------------------------------------------------------------

API_CASES = [
    (lambda nb: nblaunch.submit(None), SpecError, "notebook must be the path of an .ipynb"),
    (lambda nb: nblaunch.submit(3), SpecError, "not int"),
    (lambda nb: nblaunch.submit(nb, params="lr=1"), SpecError, "params must be a dict"),
    (lambda nb: nblaunch.submit(nb, params=[("lr", 1)]), SpecError, "params={'lr'"),
    (lambda nb: nblaunch.submit(nb, params={"class": 1}), SpecError, "Python keyword"),
    (lambda nb: nblaunch.submit(nb, params={1: 2}), SpecError, "not a string (int)"),
    (lambda nb: nblaunch.submit(nb, params={"a b": 1}), SpecError, "not a Python identifier"),
    (lambda nb: nblaunch.submit(nb, params={"x": object()}), SpecError, "not JSON-serializable"),
    (lambda nb: nblaunch.submit(nb.parent / "nope.ipynb"), SpecError, "does not exist"),
    (lambda nb: nblaunch.submit(nb.parent), SpecError, "is a folder"),
    (lambda nb: nblaunch.submit(nb, queue="gpu"), UnknownQueueError, "unknown queue 'gpu'"),
    (lambda nb: nblaunch.submit(nb, gpus=-1), SpecError, "gpus"),
    (lambda nb: nblaunch.submit(nb, gpus="two"), SpecError, "gpus"),
    (lambda nb: nblaunch.submit(nb, nodes=0), SpecError, "nodes"),
    (lambda nb: nblaunch.submit(nb, priority="urgent"), SpecError, "priority 'urgent'"),
    (lambda nb: nblaunch.submit(nb, priority=True), SpecError, "priority True"),
    (lambda nb: nblaunch.submit(nb, strategy="zero"), SpecError, "strategy"),
    (lambda nb: nblaunch.submit(nb, bogus=1), SpecError, "bogus"),
    (lambda nb: nblaunch.submit(nb, options={"zero": 2}), SpecError, "add --strategy deepspeed"),
    (lambda nb: nblaunch.submit(nb, name="x" * 201), SpecError, "name"),
    (lambda nb: nblaunch.submit(nb, workspace_limit_mb=-1), SpecError, "workspace_limit_mb"),
    (
        lambda nb: nblaunch.submit(nb.parent / "nosuchkernel.ipynb"),
        SpecError,
        "kernel 'nosuchkernel'",
    ),
    (lambda nb: nblaunch.submit(nb.parent / "no-kernelspec.ipynb"), SpecError, "names no kernel"),
    (lambda nb: nblaunch.Job("deadbeef"), UnknownJobError, "no job 'deadbeef'"),
    (lambda nb: nblaunch.Queue("gpu"), UnknownQueueError, "unknown queue 'gpu'"),
    (lambda nb: api.jobs(state="bogus"), SpecError, "unknown state 'bogus'"),
    (lambda nb: api.jobs(queue="gpu"), UnknownQueueError, "unknown queue 'gpu'"),
]


@pytest.mark.parametrize(
    ("call", "error", "needle"),
    API_CASES,
    ids=[
        "submit-None",
        "submit-int",
        "params-str",
        "params-list",
        "params-keyword",
        "params-int-key",
        "params-space",
        "params-object",
        "nb-missing",
        "nb-folder",
        "queue-unknown",
        "gpus-negative",
        "gpus-text",
        "nodes-zero",
        "priority-word",
        "priority-bool",
        "strategy-unknown",
        "option-unknown",
        "zero-without-deepspeed",
        "name-too-long",
        "workspace-limit-negative",
        "nb-unknown-kernel",
        "nb-no-kernelspec",
        "job-unknown",
        "queue-handle-unknown",
        "jobs-state",
        "jobs-queue",
    ],
)
def test_api_refuses(
    nbl_home: Path,
    nbdir: Path,
    call: Callable[[Path], Any],
    error: type[NBLaunchError],
    needle: str,
) -> None:
    before = footprint(nbl_home)
    with pytest.raises(error) as info:
        call(nbdir / "nb.ipynb")
    assert type(info.value) is error
    assert needle in str(info.value) and "\n" not in str(info.value), str(info.value)
    assert footprint(nbl_home) == before


# -- magics ---------------------------------------------------------------------------------


def magic_case(case_id: str, magic: str, line: str, needle: str) -> Any:
    return pytest.param(magic, line, needle, id=case_id)


MAGIC_CASES = [
    magic_case("p-keyword", "launch", "-p class=1", "-p 'class=1' is not name=value"),
    magic_case("params-keyword", "launch", "--params cfg", "key 'class' is not a Python"),
    magic_case("zero-no-deepspeed", "launch", "--zero 2", "add --strategy deepspeed"),
    magic_case("nodes-zero", "launch", "--nodes 0", "--nodes 0 is below 1"),
    magic_case("retries-negative", "launch", "--max-retries -2", "--max-retries -2 is below 0"),
    magic_case("workspace-limit-zero", "launch", "--workspace-limit 0", "workspace_limit_mb"),
    magic_case("workspace-over", "launch", "--workspace-limit 1", "over the 1 MB limit"),
    magic_case("broken-toml", "launch", "--queue broken", "not valid TOML"),
    magic_case("nb-kernel", "launch_notebook", "{nb}/nosuchkernel.ipynb", "'nosuchkernel'"),
    magic_case("nb-no-kernelspec", "launch_notebook", "{nb}/no-kernelspec.ipynb", "no kernel"),
    magic_case("nb-folder", "launch_notebook", "{nb}", "is a folder"),
    magic_case("nb-not-json", "launch_notebook", "{nb}/notes.ipynb", "not a notebook"),
    magic_case("nb-nbformat-3", "launch_notebook", "{nb}/v3.ipynb", "nbformat 3"),
    magic_case("nb-p-keyword", "launch_notebook", "{nb}/nb.ipynb -p def=1", "'def=1' is not"),
    magic_case("nb-priority", "launch_notebook", "{nb}/nb.ipynb --priority soon", "'soon'"),
    magic_case("jobs-state", "launch_jobs", "--state bogus", "invalid choice"),
    magic_case("cancel-no-id", "launch_cancel", "", "the following arguments are required"),
    magic_case("logs-attempt", "launch_logs", "deadbeef --attempt first", "invalid int value"),
    magic_case("queue-broken-toml", "launch_queue", "broken", "not valid TOML"),
]


@pytest.mark.parametrize(("magic", "line", "needle"), MAGIC_CASES)
def test_magic_refuses(
    ip: InteractiveShell,  # noqa: F811 - the fixture
    nbl_home: Path,
    nbdir: Path,
    magic: str,
    line: str,
    needle: str,
) -> None:
    run(ip, "cfg = {'class': 1}")
    if "broken" in line:
        write_queues(nbl_home, "[queues.broken\n")
    if "--workspace-limit 1" in line:
        lay_out(Path.cwd(), BIG)
    before = footprint(nbl_home)
    line = line.format(nb=nbdir)
    with pytest.raises(UsageError) as info:
        if magic == "launch":
            ip.run_cell_magic(magic, line, "print('hello')")
        else:
            ip.run_line_magic(magic, line)
    assert_usage_error(info, needle)
    assert footprint(nbl_home) == before


# -- jobs that have ended, and ids that name no one job --------------------------------------


def add_job(root: Path, name: str = "train", job_id: str | None = None) -> api.Job:
    """Queue a job directly in the store (a real bundle; nothing will run it)."""
    import nbformat

    from nblaunch.home import jobs_dir, objects_dir
    from nblaunch.jobs.bundle import write_bundle
    from nblaunch.jobs.spec import JobSpec

    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell("x = 1"))
    spec = JobSpec.build(name=name, notebook=str(root / f"{name}.ipynb"), submit_dir=str(root))
    job_id = job_id or secrets.token_hex(4)
    job_dir = jobs_dir(root) / job_id
    write_bundle(job_dir, spec, nb, [], objects_dir(root))
    api.store(root).insert_job(job_id, spec, job_dir)
    return api.Job(job_id, root=root)


def _ended(root: Path, state: State) -> api.Job:
    job = add_job(root)
    if state is State.CANCELLED:
        job.cancel()
    else:
        start(api.store(root), job)
        finish(api.store(root), job, state)
    assert job.state is state
    return job


@pytest.mark.parametrize("face", ["cli", "api", "magic"])
@pytest.mark.parametrize("state", [State.SUCCEEDED, State.FAILED, State.CANCELLED])
def test_cancelling_an_ended_job(
    ip: InteractiveShell,  # noqa: F811 - the fixture
    nbl_home: Path,
    capsys: pytest.CaptureFixture[str],
    face: str,
    state: State,
) -> None:
    job = _ended(nbl_home, state)
    row, before = job.row, footprint(nbl_home)
    needles = (f"already ended ({state})", "nothing was cancelled")
    if face == "cli":
        code, err = cli(capsys, "cancel", job.id)
        assert_one_line(code, err, *needles)
    elif face == "api":
        with pytest.raises(TransitionError) as exc:
            job.cancel()
        assert all(n in str(exc.value) for n in needles), str(exc.value)
    else:
        with pytest.raises(UsageError) as info:
            ip.run_line_magic("launch_cancel", job.id)
        assert_usage_error(info, *needles)
    assert job.row == row and footprint(nbl_home) == before


def test_magic_cancels_none_when_one_job_has_ended(
    ip: InteractiveShell,  # noqa: F811 - the fixture
    nbl_home: Path,
) -> None:
    ended = _ended(nbl_home, State.SUCCEEDED)  # first: start() claims the oldest job
    waiting = add_job(nbl_home, "waiting")
    with pytest.raises(UsageError) as info:
        ip.run_line_magic("launch_cancel", f"{waiting.id} {ended.id}")
    assert_usage_error(info, f"job {ended.id} already ended (succeeded)")
    assert waiting.state is State.QUEUED and waiting.row.cancel_requested_at is None


def test_preempting_a_job_that_is_not_running(
    nbl_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = add_job(nbl_home)
    row = job.row
    code, err = cli(capsys, "preempt", job.id)
    assert_one_line(code, err, "only a running job can be preempted")
    with pytest.raises(TransitionError, match="only a running job can be preempted"):
        job.preempt()
    assert job.row == row


@pytest.fixture
def two_similar_ids(nbl_home: Path) -> list[api.Job]:
    return [add_job(nbl_home, "one", "abc00001"), add_job(nbl_home, "two", "abc00002")]


@pytest.mark.parametrize("command", ["show", "cancel", "logs"])
def test_ambiguous_id_prefix(
    nbl_home: Path,
    two_similar_ids: list[api.Job],
    capsys: pytest.CaptureFixture[str],
    command: str,
) -> None:
    rows, before = [j.row for j in two_similar_ids], footprint(nbl_home)
    code, err = cli(capsys, command, "abc")
    assert_one_line(code, err, "'abc'", "nblaunch jobs")
    with pytest.raises(UnknownJobError, match="'abc'"):
        api.Job("abc")
    assert [j.row for j in two_similar_ids] == rows and footprint(nbl_home) == before


def test_card_cancel_of_a_job_that_ended_meanwhile(nbl_home: Path) -> None:
    """The card last saw the job queued; by the click it has ended: the card says so."""
    from nblaunch.widgets.card import JobCard

    job = add_job(nbl_home)
    card = JobCard(job, live=False)
    start(api.store(nbl_home), job)
    finish(api.store(nbl_home), job)
    card.cancel_button.click()
    card.confirm_button.click()
    shown = "".join(o.get("text", "") for o in card.panel.outputs)
    assert "already ended (succeeded)" in shown and "nothing was cancelled" in shown
    assert card.cancel_button in card.actions.children and card.cancel_button.disabled
    assert job.state is State.SUCCEEDED
    card.close()


# -- the kernel rule is papermill's ------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "refused"),
    [
        ("nb.ipynb", False),
        ("no-kernelspec.ipynb", True),
        ("nameless-kernel.ipynb", True),
        ("no-language.ipynb", True),
    ],
)
def test_kernel_check_matches_papermill(nbdir: Path, name: str, refused: bool) -> None:
    """What ``check_kernel`` refuses is what papermill's own lookups refuse, for a
    notebook run with parameters."""
    import nbformat
    from papermill.utils import nb_kernel_name, nb_language

    from nblaunch.jobs.bundle import check_kernel

    path = nbdir / name
    node = nbformat.read(path, as_version=4)
    try:
        nb_kernel_name(node)
        nb_language(node)
        papermill_refuses = False
    except ValueError:
        papermill_refuses = True
    assert papermill_refuses is refused
    data = json.loads(path.read_text())
    if refused:
        with pytest.raises(SpecError):
            check_kernel(data, name, here=True, parameters=True)
    else:
        check_kernel(data, name, here=True, parameters=True)


@pytest.fixture(autouse=True)
def _no_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    """No job runs here: the jobs these tests queue by hand stay where they are put
    (reading a queued job would otherwise start an agent that runs it)."""
    import nblaunch.agent.spawn

    monkeypatch.setattr(nblaunch.agent.spawn, "ensure_agent", lambda *_a, **_k: 0)
