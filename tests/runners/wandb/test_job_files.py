"""A job exported as a W&B Launch job: its files, checked against wandb's own readers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nblaunch.runners.wandb.job_files import frozen_requirements, wandb_type
from tests.conftest import make_notebook, run_cli

PARAMS = "lr = 0.01  # learning rate\ntag = 'x'\nsteps = 3\nlayers = [64, 64]\nfancy = 2 * 3\n"


@pytest.mark.parametrize(
    "value",
    [0.1, 3, -2, True, "a b'c", None, [1, 2.5], [], [None, 1], {"a": 1, "b": "x"}, [[1], [2]]],
)
def test_input_types_are_wandbs_own_types(value: object) -> None:
    from wandb.sdk.data_types._dtypes import TypeRegistry

    assert wandb_type(value) == TypeRegistry.type_of(value).to_json()


def test_frozen_requirements_are_installable_pins() -> None:
    text = "nblaunch==0.1.0\ntorch==2.13.0+cpu\nwandb==0.31.0\n\n"
    assert frozen_requirements(text) == "nblaunch==0.1.0\ntorch==2.13.0\nwandb==0.31.0\n"


def submitted_job(nbl_home: Path, tmp_path: Path) -> str:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "helper.py").write_text("def twice(x):\n    return 2 * x\n")
    notebook = make_notebook(
        folder / "train.ipynb", "from helper import twice\nprint(twice(steps))", params=PARAMS
    )
    done = run_cli("submit", str(notebook), "-p", "steps", "5", "--json")
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["id"])


def test_export_writes_the_job_as_the_launch_agent_sees_it(nbl_home: Path, tmp_path: Path) -> None:
    from wandb.apis.public.jobs import TypeRegistry

    job = submitted_job(nbl_home, tmp_path)
    dest = tmp_path / "exported"
    done = run_cli("export", job, "--wandb-job", str(dest))
    assert done.returncode == 0, done.stderr

    description = json.loads((dest / "wandb-job.json").read_text())
    assert description["_version"] == "v0"
    assert description["source_type"] == "artifact"
    assert description["source"] == {
        "entrypoint": ["python", "-m", "nblaunch.runtime", "."],
        "notebook": False,
    }
    assert description["runtime"].count(".") == 1
    types = description["input_types"]["params"]["type_map"]
    assert types == {
        "lr": {"wb_type": "number"},
        "tag": {"wb_type": "string"},
        "steps": {"wb_type": "number"},
        "layers": {
            "wb_type": "list",
            "params": {"element_type": {"wb_type": "number"}, "length": 2},
        },
        "fancy": {"wb_type": "any"},  # not a literal: W&B cannot check it
    }
    # wandb's job reader turns these into its types (Job.__init__ does exactly this).
    TypeRegistry.type_from_dict(description["input_types"])

    pins = (dest / "requirements.frozen.txt").read_text().splitlines()
    assert any(p.startswith("nblaunch==") for p in pins)
    assert any(p.startswith("papermill==") for p in pins)
    assert not [p for p in pins if "+" in p]
    for name in ("job.json", "notebook.ipynb", "requirements.txt", "workspace/helper.py"):
        assert (dest / name).is_file(), name
    assert json.loads((dest / "job.json").read_text())["params"] == {"steps": 5}

    again = run_cli("export", job, "--wandb-job", str(dest))
    assert again.returncode == 2
    assert again.stderr.strip().splitlines() == [
        f"nblaunch: error: {dest} already exists and is not an empty folder; pick a new path"
    ]
