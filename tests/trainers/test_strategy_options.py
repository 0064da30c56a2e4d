"""``nblaunch submit --strategy deepspeed --zero K --offload``: the options land in the
spec and in the job's environment, where ``training_args`` reads them."""

from __future__ import annotations

import json
from pathlib import Path

from nblaunch.api import Job, store
from tests.conftest import make_notebook, run_cli
from tests.trainers.conftest import outputs_text

SHOW_ENV = (
    "import os\n"
    "names = ('NBLAUNCH_STRATEGY', 'NBLAUNCH_ZERO_STAGE', 'NBLAUNCH_OFFLOAD', 'WORLD_SIZE')\n"
    "print({name: os.environ.get(name) for name in names})"
)


def test_zero_and_offload_reach_the_job_under_the_launcher(nbl_home: Path, tmp_path: Path) -> None:
    nb = make_notebook(tmp_path / "env.ipynb", SHOW_ENV)
    done = run_cli(
        "submit", str(nb), "--strategy", "deepspeed", "--zero", "3", "--offload", "--wait", "--json"
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    job = Job(data["id"])
    assert job.spec.options == {"zero": 3, "offload": True}
    # Any strategy runs under torchrun, one rank here (no GPU asked for): DeepSpeed and
    # FSDP set themselves up from the launcher's variables.
    expected = (
        "{'NBLAUNCH_STRATEGY': 'deepspeed', 'NBLAUNCH_ZERO_STAGE': '3', "
        "'NBLAUNCH_OFFLOAD': '1', 'WORLD_SIZE': '1'}"
    )
    assert expected in outputs_text(Path(data["output_notebook"]))
    assert (Path(data["run_dir"]) / "ranks" / "0" / "result.json").exists()


def test_zero_without_deepspeed_is_refused_before_queueing(nbl_home: Path, tmp_path: Path) -> None:
    nb = make_notebook(tmp_path / "env.ipynb", SHOW_ENV)
    for options in (["--zero", "2"], ["--strategy", "ddp", "--offload"]):
        done = run_cli("submit", str(nb), *options)
        assert done.returncode == 2
        assert done.stderr.strip() == (
            "nblaunch: error: --zero and --offload apply to DeepSpeed; add --strategy deepspeed"
        )
    done = run_cli("submit", str(nb), "--strategy", "deepspeed", "--zero", "4")
    assert done.returncode == 2 and "--zero" in done.stderr and "4" in done.stderr
    assert store(nbl_home).jobs() == []
