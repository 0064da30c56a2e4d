"""Run every benchmark of the harness; each prints its figures as ratios against a
baseline measured in the same run. ``python benchmarks/run.py [P1 P3 ...]``."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODULES = {
    "P1": "benchmarks.p1_p2_submit",
    "P2": "benchmarks.p1_p2_submit",
    "P3": "benchmarks.p3_store",
    "P4": "benchmarks.p4_p7_training",
    "P5": "benchmarks.p5_live_loss",
    "P6": "benchmarks.p6_packing",
    "P7": "benchmarks.p4_p7_training",
    "P8": "benchmarks.p_launch_magic",
}


def main(keys: list[str]) -> None:
    wanted = keys or list(MODULES)
    sys.argv = sys.argv[:1]  # each benchmark's own options keep their defaults here
    seen = []
    for key in wanted:
        module = MODULES[key.upper()]
        if module not in seen:
            seen.append(module)
            importlib.import_module(module).main()


if __name__ == "__main__":
    main(sys.argv[1:])
