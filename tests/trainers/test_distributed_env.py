"""DistributedEnv: torchrun, Slurm and Kubernetes variables read in one place."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from nblaunch.runtime.contract import DistributedEnv, first_slurm_host


def test_nothing_set_is_one_process_of_rank_zero() -> None:
    env = DistributedEnv.from_env({})
    assert env == DistributedEnv()
    assert env.is_main and not env.distributed and env.source == "single"


def test_torchrun_variables() -> None:
    env = DistributedEnv.from_env({
        "RANK": "5", "LOCAL_RANK": "1", "WORLD_SIZE": "8", "GROUP_RANK": "2",
        "GROUP_WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2",
        "MASTER_ADDR": "10.0.0.7", "MASTER_PORT": "29411",
    })  # fmt: skip
    assert env == DistributedEnv(
        rank=5, local_rank=1, world_size=8, node_rank=2, nodes=4,
        master_addr="10.0.0.7", master_port=29411, source="torchrun",
    )  # fmt: skip
    assert env.distributed and not env.is_main


def test_torchrun_wins_over_slurm() -> None:
    """Under srun + torchrun a worker sees both; torchrun's describe the process."""
    env = DistributedEnv.from_env({
        "RANK": "3", "LOCAL_RANK": "3", "WORLD_SIZE": "4",
        "SLURM_PROCID": "0", "SLURM_NTASKS": "1", "SLURM_NODEID": "0",
    })  # fmt: skip
    assert (env.source, env.rank, env.world_size) == ("torchrun", 3, 4)


def test_slurm_variables_and_master_from_the_node_list() -> None:
    env = DistributedEnv.from_env({
        "SLURM_PROCID": "6", "SLURM_LOCALID": "2", "SLURM_NTASKS": "8", "SLURM_NODEID": "1",
        "SLURM_JOB_NUM_NODES": "2", "SLURM_JOB_NODELIST": "gpu[03-04]", "MASTER_PORT": "12345",
    })  # fmt: skip
    assert env == DistributedEnv(
        rank=6, local_rank=2, world_size=8, node_rank=1, nodes=2,
        master_addr="gpu03", master_port=12345, source="slurm",
    )  # fmt: skip


def test_slurm_master_addr_set_by_the_user_wins() -> None:
    env = DistributedEnv.from_env(
        {"SLURM_PROCID": "0", "SLURM_JOB_NODELIST": "a[1-2]", "MASTER_ADDR": "head"}
    )
    assert env.master_addr == "head"


def test_slurm_older_names() -> None:
    env = DistributedEnv.from_env(
        {"SLURM_NODEID": "1", "SLURM_NNODES": "3", "SLURM_NODELIST": "n7,n8,n9"}
    )
    assert (env.node_rank, env.nodes, env.master_addr, env.rank) == (1, 3, "n7", 0)


def test_kubernetes_pytorchjob_node_variables() -> None:
    """A PyTorchJob pod that is to start torchrun itself: node rank and count."""
    env = DistributedEnv.from_env({
        "PET_NODE_RANK": "2", "PET_NNODES": "4", "MASTER_ADDR": "job-master-0", "MASTER_PORT": "23456",
    })  # fmt: skip
    assert env == DistributedEnv(
        node_rank=2, nodes=4, master_addr="job-master-0", master_port=23456, source="kubernetes"
    )


def test_kubernetes_indexed_job() -> None:
    env = DistributedEnv.from_env(
        {"JOB_COMPLETION_INDEX": "3", "PET_NNODES": "4", "MASTER_ADDR": "svc-0"}
    )
    assert (env.node_rank, env.nodes, env.master_addr, env.source) == (3, 4, "svc-0", "kubernetes")


@pytest.mark.parametrize(
    ("nodelist", "host"),
    [
        ("gpu[03-05,07],cpu1", "gpu03"),
        ("gpu[07,03-05]", "gpu07"),
        ("node1,node2", "node1"),
        ("nid[001-004]", "nid001"),
        ("a-b[1-2]", "a-b1"),
        ("single", "single"),
        ("", None),
    ],
)
def test_first_slurm_host(nodelist: str, host: str | None) -> None:
    assert first_slurm_host(nodelist) == host


def test_what_a_real_torchrun_sets(tmp_path: Path) -> None:
    """The variables as torchrun really sets them, read by each of 2 workers."""
    script = tmp_path / "read_env.py"
    script.write_text(
        "import dataclasses, json, os, sys\n"
        "from nblaunch.runtime.contract import DistributedEnv\n"
        "env = DistributedEnv.from_env()\n"
        "path = os.path.join(sys.argv[1], f'rank{env.rank}.json')\n"
        "open(path, 'w').write(json.dumps(dataclasses.asdict(env)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "--nnodes=1",
         "--master-addr=127.0.0.1", f"--master-port={free_port()}", str(script), str(tmp_path)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    for rank in (0, 1):
        env = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert env["source"] == "torchrun"
        assert (env["rank"], env["local_rank"], env["world_size"]) == (rank, rank, 2)
        assert (env["node_rank"], env["nodes"], env["master_addr"]) == (0, 1, "127.0.0.1")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
