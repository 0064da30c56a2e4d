"""The distributed environment, read in one place: torchrun, Slurm, Kubernetes."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class DistributedEnv:
    """Rank, local rank, world size and rendezvous of this process.

    torchrun's variables win (they describe this very process); then Slurm's
    (``SLURM_PROCID`` …, master from the first host of ``SLURM_JOB_NODELIST``);
    then Kubernetes PyTorchJob / Indexed Job variables. With none set this is a
    single process of rank 0.
    """

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    node_rank: int = 0
    nodes: int = 1
    master_addr: str = "127.0.0.1"
    master_port: int = 29500
    source: str = "single"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DistributedEnv:
        e = os.environ if env is None else env
        port = int(e.get("MASTER_PORT", "29500"))
        if "RANK" in e and "WORLD_SIZE" in e:
            return cls(
                rank=int(e["RANK"]),
                local_rank=int(e.get("LOCAL_RANK", "0")),
                world_size=int(e["WORLD_SIZE"]),
                node_rank=int(e.get("GROUP_RANK", e.get("NODE_RANK", "0"))),
                nodes=int(e.get("GROUP_WORLD_SIZE") or e.get("NNODES") or e.get("PET_NNODES") or 1),
                master_addr=e.get("MASTER_ADDR", "127.0.0.1"),
                master_port=port,
                source="torchrun",
            )
        if "SLURM_PROCID" in e or "SLURM_NODEID" in e:
            nodelist = e.get("SLURM_JOB_NODELIST", e.get("SLURM_NODELIST", ""))
            return cls(
                rank=int(e.get("SLURM_PROCID", "0")),
                local_rank=int(e.get("SLURM_LOCALID", "0")),
                world_size=int(e.get("SLURM_NTASKS", "1")),
                node_rank=int(e.get("SLURM_NODEID", "0")),
                nodes=int(e.get("SLURM_JOB_NUM_NODES", e.get("SLURM_NNODES", "1"))),
                master_addr=e.get("MASTER_ADDR") or first_slurm_host(nodelist) or "127.0.0.1",
                master_port=port,
                source="slurm",
            )
        if "PET_NODE_RANK" in e or "JOB_COMPLETION_INDEX" in e:
            node_rank = int(e.get("PET_NODE_RANK", e.get("JOB_COMPLETION_INDEX", "0")))
            return cls(
                node_rank=node_rank,
                nodes=int(e.get("PET_NNODES", "1")),
                master_addr=e.get("MASTER_ADDR", "127.0.0.1"),
                master_port=port,
                source="kubernetes",
            )
        return cls()


def first_slurm_host(nodelist: str) -> str | None:
    """First host of a Slurm node list: ``gpu[03-05,07],cpu1`` → ``gpu03``."""
    if not nodelist:
        return None
    match = re.match(r"([^,\[]+)(?:\[([^\]]+)\])?", nodelist)
    if match is None:
        return None
    prefix, ranges = match.groups()
    if not ranges:
        return prefix
    return prefix + ranges.split(",")[0].split("-")[0]
