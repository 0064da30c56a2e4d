"""``--dry-run`` shows what an attempt would create on its queue's engine, needing no
cluster, no kubeconfig and writing nothing to the home."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from IPython.core.interactiveshell import InteractiveShell

from tests.conftest import make_notebook, run_cli, write_queues
from tests.extension.conftest import nothing_queued, run

QUEUES = """
[queues.k8s-a100]
runner = "kubernetes"
image = "ghcr.io/acme/train:1.0"
namespace = "ml"
gpus_per_node = 8
kubeconfig = "/nonexistent/kubeconfig"
secret_env = { WANDB_API_KEY = "wandb/api-key" }

[queues.slurm-a100]
runner = "slurm"
run_root = "/nonexistent/runs"
partition = "a100"
gpus_per_node = 8
"""


def test_cli_prints_the_manifests_and_queues_nothing(nbl_home: Path, tmp_path: Path) -> None:
    write_queues(nbl_home, QUEUES)
    nb = make_notebook(tmp_path / "train.ipynb", "print(lr)", params="lr = 0.1")
    out = run_cli(
        "submit",
        str(nb),
        "--queue",
        "k8s-a100",
        "--gpus",
        "8",
        "--nodes",
        "2",
        "--strategy",
        "ddp",
        "-p",
        "lr",
        "0.3",
        "--dry-run",
        KUBECONFIG="/nonexistent",
    )
    docs = list(yaml.safe_load_all(out.stdout))
    assert [d["kind"] for d in docs] == ["Job", "ConfigMap", "Service"]
    job = docs[0]
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"] == {"nvidia.com/gpu": "8"}
    assert job["spec"]["completions"] == 2
    assert "elided" in docs[1]["binaryData"]["bundle.tar.gz"]
    # No secret value anywhere, only its reference.
    env = {e["name"]: e for e in container["env"]}
    assert "value" not in env["WANDB_API_KEY"]
    assert nothing_queued(nbl_home)


def test_cli_dry_run_of_a_slurm_queue_shows_the_batch_script(
    nbl_home: Path, tmp_path: Path
) -> None:
    write_queues(nbl_home, QUEUES)
    nb = make_notebook(tmp_path / "train.ipynb", "print(1)")
    out = run_cli("submit", str(nb), "--queue", "slurm-a100", "--gpus", "2", "--dry-run")
    (doc,) = yaml.safe_load_all(out.stdout)
    assert "--partition=a100" in doc["sbatch"] and "--gres=gpu:2" in doc["sbatch"]
    assert "python" in doc["script"] and "-m nblaunch.runtime" in doc["script"]
    assert nothing_queued(nbl_home)


def test_launch_magic_dry_run_shows_the_manifests_in_the_notebook(
    ip: InteractiveShell, nbl_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_queues(nbl_home, QUEUES)
    bundle = run(ip, "%%launch --queue k8s-a100 --gpus 8 --strategy ddp --dry-run\nprint('train')")
    shown = capsys.readouterr().out
    assert nothing_queued(nbl_home)
    assert (bundle / "job.json").exists()
    manifests = shown[shown.index("# what the first attempt creates") :]
    docs = list(yaml.safe_load_all(manifests))
    job = docs[0]
    assert job["kind"] == "Job" and job["metadata"]["namespace"] == "ml"
    limits = job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits == {"nvidia.com/gpu": "8"}


def test_a_job_too_big_for_the_queue_is_refused_in_one_line(nbl_home: Path, tmp_path: Path) -> None:
    write_queues(nbl_home, QUEUES)
    nb = make_notebook(tmp_path / "train.ipynb", "print(1)")
    out = run_cli("submit", str(nb), "--queue", "k8s-a100", "--gpus", "16", "--dry-run")
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "8 GPU(s) per node" in out.stderr
