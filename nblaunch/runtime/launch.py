"""Multi-process jobs: torchrun starts one ``nblaunch.runtime.rank`` per process,
each executing the notebook with a papermill kernel of its own."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from nblaunch.runtime.execute import SignalForwarder, ended, ranks_per_node
from nblaunch.trainers.distributed import DistributedEnv


def run_distributed(
    bundle: Path, run_dir: Path, spec: dict[str, Any], forwarder: SignalForwarder
) -> dict[str, Any]:
    """Run every local rank under torchrun; the job's outcome is rank 0's, unless
    another rank failed first (then that rank's error, so the cause is shown)."""
    node = DistributedEnv.from_env()
    nodes = int(spec["nodes"])
    master_port = node.master_port if nodes > 1 else _free_port()
    argv = [
        sys.executable, "-m", "torch.distributed.run",
        f"--nproc-per-node={ranks_per_node(spec)}",
        f"--nnodes={nodes}",
        f"--node-rank={node.node_rank if nodes > 1 else 0}",
        f"--master-addr={node.master_addr if nodes > 1 else '127.0.0.1'}",
        f"--master-port={master_port}",
        "-m", "nblaunch.runtime.rank", str(bundle), str(run_dir),
    ]  # fmt: skip
    code = subprocess.call(argv, stdin=subprocess.DEVNULL)
    results = _rank_results(run_dir)
    failed = [r for r in results if r["state"] != "succeeded"]
    if results and not failed and code == 0:
        return ended(forwarder, "succeeded", None)
    if failed:
        first = failed[0]
        return ended(forwarder, first["outcome"], first.get("error"))
    error = {
        "ename": "DistributedLaunchError",
        "evalue": (
            f"torchrun exited with code {code} before any rank reported; see {run_dir / 'logs'}"
        ),
        "cell_index": None,
    }
    return ended(forwarder, "runtime_error", error)


def _rank_results(run_dir: Path) -> list[dict[str, Any]]:
    results = []
    for path in sorted((run_dir / "ranks").glob("*/result.json"), key=lambda p: int(p.parent.name)):
        results.append(json.loads(path.read_text()))
    return results


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
