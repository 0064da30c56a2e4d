"""Multi-rank jobs through the real CLI: a copy of an example notebook, a local queue
with GPU slots, ``nblaunch submit ... --wait --json``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import nbformat

from nblaunch.api import Job
from tests.conftest import run_cli, write_queues

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def submit_example(
    nbl_home: Path, tmp_path: Path, notebook: str | Path, *options: str, gpus: int = 2
) -> tuple[dict[str, Any], Job]:
    """Copy ``notebooks/<notebook>`` (or the notebook at a path) and the examples' data
    into ``tmp_path``, give the local queue ``gpus`` slots, submit through the CLI
    and wait; the job must succeed."""
    folder = tmp_path / "nb"
    if not folder.exists():
        folder.mkdir()
        shutil.copytree(NOTEBOOKS / "data", folder / "data")
    source = notebook if isinstance(notebook, Path) else NOTEBOOKS / notebook
    nb = folder / source.name
    if source != nb:
        shutil.copy(source, nb)
    write_queues(nbl_home, f"[queues.local]\ngpus = {gpus}\n")
    done = run_cli("submit", str(nb), *options, "--wait", "--json", timeout=480)
    assert done.stdout, done.stderr
    data = json.loads(done.stdout)
    job = Job(data["id"])
    assert done.returncode == 0 and data["state"] == "succeeded", job.logs()
    return data, job


def rank_texts(data: dict[str, Any], ranks: int) -> list[str]:
    """Check every rank kept its log, result and notebook; return each rank's stdout.

    Rank 0's notebook is the job's ``output.ipynb``; the others sit beside their logs.
    """
    run_dir = Path(data["run_dir"])
    assert Path(data["output_notebook"]) == run_dir / "output.ipynb"
    texts = []
    for rank in range(ranks):
        folder = run_dir / "ranks" / str(rank)
        result = json.loads((folder / "result.json").read_text())
        assert result["state"] == "succeeded", (rank, result)
        assert (folder / "stderr.log").exists()
        stdout = (folder / "stdout.log").read_text()
        assert f"rank {rank} of {ranks}" in stdout, (rank, stdout)
        notebook = run_dir / "output.ipynb" if rank == 0 else folder / "output.ipynb"
        assert f"rank {rank} of {ranks}" in outputs_text(notebook)
        texts.append(stdout)
    assert not (run_dir / "ranks" / "0" / "output.ipynb").exists()
    assert not (run_dir / "ranks" / str(ranks)).exists()
    # rank 0 speaks for the job: its output is in the job's log too
    assert f"rank 0 of {ranks}" in (run_dir / "logs" / "stdout.log").read_text()
    return texts


def losses(job: Job) -> dict[int, float]:
    return {r["step"]: r["value"] for r in job.metrics("loss")}


def outputs_text(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    return "".join(
        out.get("text", "")
        for cell in nb.cells
        for out in cell.get("outputs", [])
        if out.get("output_type") == "stream"
    )
