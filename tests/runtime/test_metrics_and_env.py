"""Inside the job: its environment, metrics that reach the store while it runs,
and the light import path of the in-job modules."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import nblaunch
from tests.conftest import make_notebook, run_cli

WAIT = "import os, time\nwhile not os.path.exists(release):\n    time.sleep(0.05)"


def _running_with_metric(job: nblaunch.Job, name: str, timeout: float = 120) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = job.metrics(name)
        if rows:
            return rows
        assert not job.row.final, job.logs()
        time.sleep(0.1)
    raise AssertionError(f"no {name!r} metric while running: {job.status_line()}")


def test_wandb_log_and_nblaunch_log_reach_the_store_while_running(
    nbl_home: Path, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    nb = make_notebook(
        tmp_path / "logs.ipynb",
        "import wandb\nrun = wandb.init(project='nbl-test')\n"
        "for step in range(5):\n    wandb.log({'train/loss': 1.0 / (step + 1), 'note': 'text is skipped'})",
        "import nblaunch\nnblaunch.log({'custom': 42.0, 'max_steps': 10}, step=7)",
        WAIT,
        "wandb.finish()",
        params="release = ''",
    )
    job = nblaunch.submit(nb, params={"release": str(release)})
    losses = _running_with_metric(job, "train/loss")
    custom = _running_with_metric(job, "custom")
    assert job.state.value == "running"
    assert [r["value"] for r in losses] == [1.0, 0.5, 1 / 3, 0.25, 0.2]
    assert [r["step"] for r in losses] == [0, 1, 2, 3, 4]
    assert custom[0]["step"] == 7 and custom[0]["value"] == 42.0
    assert job.snapshot().progress.max_steps == 10
    assert not job.metrics("note")
    shown = run_cli("metrics", job.id, "--json")
    assert shown.returncode == 0
    assert {r["name"] for r in json.loads(shown.stdout)} >= {"train/loss", "custom", "max_steps"}
    release.touch()
    assert job.wait(timeout=120).value == "succeeded", job.logs()
    # Ingested once each, even though the agent read the stream while it grew.
    assert len(job.metrics("train/loss")) == 5


def test_job_environment(nbl_home: Path, tmp_path: Path) -> None:
    keys = [
        "NBLAUNCH_JOB_ID", "NBLAUNCH_ATTEMPT", "NBLAUNCH_RUN_DIR", "NBLAUNCH_CHECKPOINT_DIR",
        "WANDB_RUN_ID", "WANDB_RESUME", "WANDB_MODE", "WANDB_DIR", "NBLAUNCH_SUBMIT_DIR",
        "NBLAUNCH_WORKSPACE",
    ]  # fmt: skip
    nb = make_notebook(
        tmp_path / "env.ipynb",
        f"import os, json\njson.dump({{k: os.environ.get(k) for k in {keys!r}}}, open('env.json', 'w'))",
    )
    job = nblaunch.submit(nb)
    assert job.wait(timeout=120).value == "succeeded", job.logs()
    run = job.run()
    assert run is not None
    run_dir = run.path
    env = json.loads((run.workspace / "env.json").read_text())
    assert env["NBLAUNCH_WORKSPACE"] == str(run.workspace)
    assert env["NBLAUNCH_JOB_ID"] == job.id
    assert env["NBLAUNCH_ATTEMPT"] == "1"
    assert env["NBLAUNCH_RUN_DIR"] == str(run_dir)
    assert env["NBLAUNCH_CHECKPOINT_DIR"] == str(job.row.job_dir / "checkpoints")
    assert env["WANDB_RUN_ID"] == f"nbl-{job.id}" and env["WANDB_RESUME"] == "allow"
    assert env["WANDB_MODE"] == "offline"
    assert Path(env["WANDB_DIR"]).is_relative_to(run_dir)
    assert env["NBLAUNCH_SUBMIT_DIR"] == str(tmp_path)


def test_custom_loop_checkpoints_on_preemption_and_resumes(nbl_home: Path, tmp_path: Path) -> None:
    nb = make_notebook(
        tmp_path / "loop.ipynb",
        "import time, torch\nfrom nblaunch.runtime import preempted\nfrom nblaunch.trainers.checkpoint import Checkpointer\n"
        "import nblaunch\n"
        "torch.manual_seed(0)\nmodel = torch.nn.Linear(4, 1)\nopt = torch.optim.SGD(model.parameters(), lr=0.01)\n"
        "ckpt = Checkpointer(every=50)\nstart = ckpt.load(model, opt)\nprint('start', start)\n"
        "nblaunch.log({'max_steps': 400, 'start': start}, step=start)\n"
        "for step in range(start, 400):\n"
        "    x = torch.full((8, 4), (step % 7) / 7.0)\n"
        "    loss = ((model(x) - 1.0) ** 2).mean()\n"
        "    opt.zero_grad(); loss.backward(); opt.step()\n"
        "    nblaunch.log({'loss': loss.item()}, step=step + 1)\n"
        "    time.sleep(0.02)\n"
        "    if ckpt.due(step + 1) or preempted():\n"
        "        ckpt.save(step + 1, model, opt)\n"
        "    if preempted():\n"
        "        break",
        "print('after', 'the loop')",
    )
    job = nblaunch.submit(nb)
    deadline = time.monotonic() + 120
    while not any(r["step"] >= 120 for r in job.metrics("loss")):
        assert time.monotonic() < deadline and not job.row.final, job.logs()
        time.sleep(0.05)
    assert run_cli("preempt", job.id).returncode == 0
    assert job.wait(timeout=180).value == "succeeded", job.logs()
    attempts = job._store.attempts(job.id)
    assert [a.state.value for a in attempts] == ["preempted", "succeeded"]
    first_out = (attempts[0].run_dir / "output.ipynb").read_text()
    assert "after the loop" not in first_out  # remaining cells did not run after SIGTERM
    assert "Preempted" in first_out
    starts = [r["value"] for r in job.metrics("start")]
    assert starts[0] == 0 and starts[1] >= 120  # resumed from the preemption checkpoint
    assert max(r["step"] for r in job.metrics("loss")) == 400


def test_in_job_modules_import_light() -> None:
    code = (
        "import sys\n"
        "import nblaunch.runtime, nblaunch.runtime.execute, nblaunch.runtime.contract\n"
        "import nblaunch.trainers.checkpoint, nblaunch.runtime.kernel\n"
        "heavy = [m for m in ('IPython.core.magic', 'ipywidgets', 'anywidget', 'nblaunch.queue.store',\n"
        "         'nblaunch.extension', 'nblaunch.widgets', 'nblaunch.api', 'nblaunch.cli',\n"
        "         'papermill', 'wandb', 'transformers', 'torch', 'click', 'rich') if m in sys.modules]\n"
        "print(heavy)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout


def test_preemption_while_the_attempt_starts_is_still_a_preemption(
    nbl_home: Path, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    nb = make_notebook(
        tmp_path / "early.ipynb",
        "import os\nwith open(marks, 'a') as fh:\n    fh.write(os.environ['NBLAUNCH_ATTEMPT'] + '\\n')",
        params="marks = ''",
    )
    job = nblaunch.submit(nb, params={"marks": str(marks)})
    while job.state.value != "running":
        time.sleep(0.005)
    job.preempt()  # lands while the runtime or its kernel is still starting
    assert job.wait(timeout=120).value == "succeeded", job.logs()
    attempts = job._store.attempts(job.id)
    assert [a.state.value for a in attempts] == ["preempted", "succeeded"]
    # The preempted attempt ran none of the notebook; the resumed one ran it once.
    assert marks.read_text().split() == ["2"]


#: a stand-in for the kernel's own stdout flush at the end of an execute request:
#: on first use, it has the runtime SIGTERMed and waits until the signal has
#: reached the kernel, so the signal lands in the kernel's request handling,
#: after the cell, not in it (compiled outside the notebook's namespace)
SIGTERM_IN_FLUSH = """\
import os, signal, sys, time
from nblaunch.runtime.kernel import flagged
real_flush = sys.stdout.flush
def flush():
    sys.stdout.flush = real_flush
    os.kill(os.getppid(), signal.SIGTERM)
    while not flagged():
        time.sleep(0.01)
    real_flush()
"""


def test_sigterm_in_the_kernels_own_code_stops_the_notebook_at_its_next_cell(
    nbl_home: Path, tmp_path: Path
) -> None:
    nb = make_notebook(
        tmp_path / "between.ipynb",
        "import os, sys\n"
        "if os.environ['NBLAUNCH_ATTEMPT'] == '1':\n"
        f"    hook = {{}}\n    exec({SIGTERM_IN_FLUSH!r}, hook)\n"
        "    sys.stdout.flush = hook['flush']",
        "print('second cell ran')",
    )
    job = nblaunch.submit(nb)
    assert job.wait(timeout=120).value == "succeeded", job.logs()
    first, second = job._store.attempts(job.id)
    assert first.failure_class == "preempted", first
    outputs = [
        json.dumps(json.loads((a.run_dir / "output.ipynb").read_text())["cells"][-1]["outputs"])
        for a in (first, second)
    ]
    assert "second cell ran" not in outputs[0] and "Preempted" in outputs[0], outputs[0]
    assert "second cell ran" in outputs[1], outputs[1]
