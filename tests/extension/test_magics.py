"""The magics in a real InteractiveShell, up to the queue: refusals, bad input, dry runs,
setup cells. Nothing here runs a job (see test_jobs.py for that)."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from nblaunch.extension.cells import BODY_TAG, SETUP_TAG
from tests.conftest import make_notebook, write_queues
from tests.extension.conftest import nothing_queued, run

OPTIONS = [
    "--queue",
    "--gpus",
    "--strategy",
    "--nodes",
    "-p",
    "--params",
    "--name",
    "--priority",
    "--max-retries",
    "--out",
    "--wait",
    "--dry-run",
    "--no-widget",
]


def test_usage_lists_every_option(ip: InteractiveShell) -> None:
    doc = ip.find_cell_magic("launch").__doc__
    for option in [*OPTIONS, "--force"]:
        assert option in doc
    assert "{none,ddp,fsdp,deepspeed}" in doc
    notebook_doc = ip.find_line_magic("launch_notebook").__doc__
    for option in [*OPTIONS, "--sweep"]:
        assert option in notebook_doc
    for magic in (
        "launch_setup",
        "launch_jobs",
        "launch_cancel",
        "launch_logs",
        "launch_queue",
        "launch_estimate",
    ):
        assert ip.find_magic(magic) is not None, magic


def test_kernel_only_name_refused_before_submit(ip: InteractiveShell, nbl_home: Path) -> None:
    run(ip, "model = object()\ntokenizer = 'tok'")
    with pytest.raises(UsageError) as info:
        ip.run_cell_magic("launch", "--gpus 0", "import math\nprint(model, tokenizer, math.pi)\n")
    message = str(info.value)
    assert "`model`, `tokenizer`" in message
    assert "mark the cells that define `model`, `tokenizer` with %%launch_setup" in message
    assert "\n" not in message
    assert nothing_queued(nbl_home)
    # through a real cell too: IPython shows the one line, no traceback, the cell fails
    result = ip.run_cell("%%launch\nprint(model)")
    assert isinstance(result.error_in_exec, UsageError)
    assert "mark the cell that defines `model` with %%launch_setup" in str(result.error_in_exec)
    assert nothing_queued(nbl_home)


def test_names_from_setup_params_imports_and_the_cell_pass(
    ip: InteractiveShell, nbl_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(
        ip, "%%launch_setup data\nimport json\nrows = [1, 2, 3]\ndef total(xs):\n    return sum(xs)"
    )
    run(ip, "lr = 0.5\nhelper = 1\nconfig = {'epochs': 2}")  # kernel values the job gets otherwise
    bundle = run(
        ip,
        "%%launch --dry-run -p lr=0.1 --params config\n"
        "import os\ndef helper(x):\n    return x\n"
        "print(json.dumps(total(rows)), lr, epochs, helper(os.sep))",
    )
    assert nothing_queued(nbl_home)
    nb = nbformat.read(bundle / "notebook.ipynb", as_version=4)
    tags = [c.metadata["tags"][0] for c in nb.cells]
    assert tags == ["parameters", SETUP_TAG, BODY_TAG]
    assert nb.cells[0].source == "# Parameters\nepochs = 2\nlr = 0.1"
    assert nb.cells[1].source.startswith("import json\nrows = [1, 2, 3]")
    spec = json.loads((bundle / "job.json").read_text())
    assert spec["params"] == {"epochs": 2, "lr": 0.1}
    for name in ("requirements.txt", "git.json"):
        assert (bundle / name).exists()
    shown = capsys.readouterr().out
    assert "nothing queued" in shown and "# ---- cell 2: the %%launch cell ----" in shown


def test_force_skips_the_check(ip: InteractiveShell, nbl_home: Path) -> None:
    run(ip, "model = object()")
    bundle = ip.run_cell_magic("launch", "--force --dry-run", "print(model)")
    assert (bundle / "job.json").exists()
    assert nothing_queued(nbl_home)


@pytest.mark.parametrize(
    ("line", "cell", "message"),
    [
        ("--bogus", "x = 1", "unrecognized arguments: --bogus"),
        ("--gpus two", "x = 1", "invalid int value"),
        ("--strategy zero", "x = 1", "invalid choice"),
        ("--queue nowhere", "x = 1", "unknown queue 'nowhere'"),
        ("-p lr", "x = 1", "-p 'lr' is not name=value"),
        ("-p 1x=2", "x = 1", "is not name=value"),
        ("-p s={{1,2}}", "x = 1", "not JSON-serializable"),  # {{ keeps a brace
        ("--params cfg", "x = 1", "not a dict"),
        ("--params nothing_here", "x = 1", "no variable 'nothing_here'"),
        ("--out 2x", "x = 1", "not a Python identifier"),
        ("--priority urgent", "x = 1", "priority 'urgent' is not valid"),
        ("--gpus -1", "x = 1", "gpus"),
        ('-p "a=1', "x = 1", "check its quotes"),
        ("", "   \n  ", "the cell is empty"),
        ("", "def broken(:\n    pass", "the %%launch cell does not parse"),
    ],
)
def test_bad_input_is_one_line_and_queues_nothing(
    ip: InteractiveShell, nbl_home: Path, line: str, cell: str, message: str
) -> None:
    run(ip, "cfg = [1, 2]")
    with pytest.raises(UsageError) as info:
        ip.run_cell_magic("launch", line, cell)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert nothing_queued(nbl_home)


def test_capacity_checked_before_anything_is_written(ip: InteractiveShell, nbl_home: Path) -> None:
    write_queues(nbl_home, "[queues.local]\ngpus = 1\n")
    with pytest.raises(UsageError, match="has 1 GPU"):
        ip.run_cell_magic("launch", "--gpus 2", "x = 1")
    assert nothing_queued(nbl_home)


def test_notebook_bad_input(ip: InteractiveShell, nbl_home: Path, tmp_path: Path) -> None:
    nb = make_notebook(tmp_path / "train.ipynb", "print(lr)", params="lr = 0.1")
    for line, message in [
        (f"{nb} --sweep lr=", "has no values"),
        (f"{nb} --sweep lr", "is not name=v1,v2"),
        (f"{nb} --sweep lr=1,2 --sweep lr=3", "given twice"),
        (f"{nb} -p lr=1 --sweep lr=1,2", "both a -p parameter and a --sweep"),
        (f"{tmp_path / 'missing.ipynb'}", "does not exist"),
        (f"{nb} --queue nowhere --sweep lr=1,2", "unknown queue"),
    ]:
        with pytest.raises(UsageError, match=message):
            ip.run_line_magic("launch_notebook", line)
    assert nothing_queued(nbl_home)


def test_notebook_sweep_dry_run(ip: InteractiveShell, nbl_home: Path, tmp_path: Path) -> None:
    nb = make_notebook(tmp_path / "train.ipynb", "print(lr, opt)", params="lr = 0.1\nopt = 'x'")
    bundles = ip.run_line_magic(
        "launch_notebook", f"{nb} --dry-run --name r{{i}}-{{opt}} --sweep lr=1,2 --sweep opt=a,b"
    )
    specs = [json.loads((b / "job.json").read_text()) for b in bundles]
    assert [s["name"] for s in specs] == ["r0-a", "r1-b", "r2-a", "r3-b"]
    assert len({s["sweep_id"] for s in specs}) == 1
    assert nothing_queued(nbl_home)


def test_setup_cells_record_replace_list_clear(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    run(ip, "%%launch_setup\nvalue = 1", cell_id="cell-a")
    run(ip, "%%launch_setup\nvalue = 2", cell_id="cell-a")  # the same cell, edited
    run(ip, "%%launch_setup named\nother = value + 1")
    run(ip, "%%launch_setup named\nother = value + 10")
    assert ip.user_ns["other"] == 12  # ran now, in the kernel
    capsys.readouterr()
    ip.run_line_magic("launch_setup", "--list")
    listing = capsys.readouterr().out
    assert "2 setup cell(s)" in listing
    assert "cell cell-a: value = 2" in listing and "named: other = value + 10" in listing
    bundle = ip.run_cell_magic("launch", "--dry-run", "print(other)")
    nb = nbformat.read(bundle / "notebook.ipynb", as_version=4)
    assert [c.source for c in nb.cells[1:3]] == ["value = 2", "other = value + 10"]
    ip.run_line_magic("launch_setup", "--clear")
    assert "no setup cells recorded" in _listing(ip, capsys)


def test_failing_setup_cell_fails_and_is_not_recorded(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(UsageError, match="raised ZeroDivisionError, so it was not recorded"):
        run(ip, "%%launch_setup\nbroken = 1 / 0")
    assert "no setup cells recorded" in _listing(ip, capsys)
    with pytest.raises(UsageError, match="no cell to record"):
        ip.run_line_magic("launch_setup", "data")


def test_variable_expansion_in_the_magic_line(ip: InteractiveShell, nbl_home: Path) -> None:
    run(ip, "i = 3\nseed = 7\nqueue = 'local'")
    bundle = run(
        ip,
        "%%launch --dry-run --queue $queue -p name=run-{i} -p seed=$seed -p keep={{i}}\n"
        "print(name, seed, keep)",
    )
    spec = json.loads((bundle / "job.json").read_text())
    assert spec["params"] == {"name": "run-3", "seed": 7, "keep": "{i}"}
    assert spec["queue"] == "local"


def test_listing_magics_on_an_empty_store(
    ip: InteractiveShell, nbl_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ip.run_line_magic("launch_jobs", "")
    assert capsys.readouterr().out.strip() == "no jobs"
    with pytest.raises(UsageError, match="unknown queue 'nope'"):
        ip.run_line_magic("launch_jobs", "--queue nope")
    with pytest.raises(UsageError, match="nope"):
        ip.run_line_magic("launch_cancel", "nope")
    with pytest.raises(UsageError, match="nope"):
        ip.run_line_magic("launch_logs", "nope")
    with pytest.raises(UsageError, match="unknown queue 'nope'"):
        ip.run_line_magic("launch_queue", "nope")


def test_estimate_magic(ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    ip.run_line_magic("launch_estimate", "--params 124M --tokens 1B --gpu A100-80GB --price 2")
    text = capsys.readouterr().out
    assert "MFU" in text and "memory" in text
    ip.run_line_magic("launch_estimate", "--params 124M --tokens 1B --gpu A100-80GB --json")
    assert json.loads(capsys.readouterr().out)["gpu"] == "A100-80GB"
    with pytest.raises(UsageError, match="%launch_estimate"):
        ip.run_line_magic("launch_estimate", "--tokens 1B")


def _listing(ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    ip.run_line_magic("launch_setup", "--list")
    return capsys.readouterr().out
