"""P1: ``nblaunch submit --wait`` ÷ bare papermill on the same trivial notebook (target <= 1.15).
P2: submit → running on an idle local queue (target <= 0.5 s), against the cost of
starting a bare Python process, which every job start pays."""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.harness import isolated_home, median, notebook, python, report, run, timed

ROUNDS = 7


def main() -> None:
    bin_dir = Path(python()).parent
    with tempfile.TemporaryDirectory() as tmp, isolated_home() as home:
        folder = Path(tmp)
        nb = notebook(folder / "trivial.ipynb", "x = 1", "y = x * 2\nprint(y)")
        import nblaunch
        from nblaunch.agent.spawn import ensure_agent
        from nblaunch.api import store

        ensure_agent(home, store(home))  # a live agent, as after the first submit of a session
        nbl, bare = [], []
        for _ in range(ROUNDS):  # interleaved so drift hits both alike
            nbl.append(
                timed(
                    lambda: run(
                        str(bin_dir / "nblaunch"), "submit", str(nb), "-p", "x", "3", "--wait"
                    )
                )
            )
            bare.append(
                timed(
                    lambda: run(
                        str(bin_dir / "papermill"),
                        str(nb),
                        str(folder / "out.ipynb"),
                        "-p",
                        "x",
                        "3",
                    )
                )
            )
        p1 = median(nbl) / median(bare)
        report("P1", "submit --wait, trivial notebook", median(nbl), "s", median(bare),
               "papermill CLI", "<= 1.15", p1 <= 1.15)  # fmt: skip

        latencies, spawns = [], []
        for _ in range(ROUNDS):
            time.sleep(0.3)  # the agent is idle, asleep in select
            job = nblaunch.submit(nb)
            events = {e.to_state: e.time for e in job.events()}
            while "running" not in events:
                time.sleep(0.01)
                events = {e.to_state: e.time for e in job.events()}
            latencies.append(events["running"] - events["queued"])
            job.wait()
            spawns.append(timed(lambda: subprocess.run([python(), "-c", "pass"], check=True)))
        p2 = median(latencies)
        report("P2", "submit -> running, idle local queue", p2, "s", median(spawns),
               "bare python process start", "<= 0.5 s", p2 <= 0.5)  # fmt: skip


if __name__ == "__main__":
    main()
