"""Multi-process jobs: torchrun starts one ``nblaunch.runtime.rank`` per process,
each executing the notebook with a papermill kernel of its own."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from nblaunch.runtime.contract import DistributedEnv, Outcome, Result, RunDir
from nblaunch.runtime.notebook import SignalForwarder, ended


def run_distributed(
    bundle: Path, run: RunDir, spec: dict[str, Any], forwarder: SignalForwarder
) -> Result:
    """Run every local rank under torchrun; the job's outcome is rank 0's, unless a
    rank failed (then the first rank's own failure, so the cause is shown)."""
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
        "-m", "nblaunch.runtime.rank", str(bundle), str(run.path),
    ]  # fmt: skip
    code = subprocess.call(argv, stdin=subprocess.DEVNULL)
    results = [r for r in map(Result.read, run.rank_results()) if r is not None]
    # A rank's own failure first: the other ranks are often only stopped because of it.
    failed = sorted(
        (r for r in results if r.outcome is not Outcome.SUCCEEDED),
        key=lambda r: r.outcome is Outcome.PREEMPTED,
    )
    if results and not failed and code == 0:
        return ended(forwarder, Outcome.SUCCEEDED, None)
    if failed:
        return ended(forwarder, failed[0].outcome, failed[0].error)
    error = {
        "ename": "DistributedLaunchError",
        "evalue": f"torchrun exited with code {code} before any rank reported; see {run.logs}",
        "cell_index": None,
    }
    return ended(forwarder, Outcome.RUNTIME_ERROR, error)


def ranks_per_node(spec: dict[str, Any]) -> int:
    if spec["strategy"] == "none":
        return 1
    return max(1, int(spec["gpus"]))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
