"""Benchmark P5 stays within budget: a live-loss update with a 100k-point history
costs <= 5 ms in the kernel and <= 64 KB on the wire (a short run of benchmarks/p5_live_loss.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "p5_live_loss.py"


def test_p5_live_loss_budget(nbl_home: Path) -> None:
    spec = importlib.util.spec_from_file_location("p5_live_loss", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.measure(history=100_000, updates=20, baseline_updates=1, stall_s=0.5)
    p5, base = result["live_loss_update"], result["baseline_list_float_resend"]
    assert p5["ms_median"] <= bench.BUDGET_MS, bench.report(result)
    assert p5["bytes_max"] <= bench.BUDGET_BYTES, bench.report(result)
    assert p5["bytes_median"] * 50 < base["bytes_median"]  # vs. resending the history
