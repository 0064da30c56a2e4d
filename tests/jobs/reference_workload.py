"""A reference workload that runs beside timed jobs and measures the machine's speed.

A timed job's wall time depends on what else the machine is doing; a test
that compares two jobs run a minute apart compares two loads as much as two
predictions. :class:`ReferenceWorkload` trains the jobs' tiny GPT-2 on
random tokens in a process of its own, for as long as the test runs, and
stamps the time of every step. Its step rate over a span of a job is the
machine's speed then, measured in the same run, on the same kind of work:
the scheduler gives the reference's one thread the same share of the cores
as a job's one training thread, so load that slows the one slows the other
alike.

Run as a script it is the workload itself: ``python reference_workload.py STAMPS``.
"""

from __future__ import annotations

import bisect
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

__all__ = ["ReferenceWorkload"]


class ReferenceWorkload:
    """The reference process: start it, wait until it steps, read its rate over spans.

    Parameters
    ----------
    stamps
        File the process appends one wall-clock time (``time.time()``) per step to;
        its output goes beside it, with the suffix ``.log``.
    """

    def __init__(self, stamps: Path) -> None:
        self.stamps = stamps
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ReferenceWorkload:
        self.stamps.write_text("")
        with open(self.stamps.with_suffix(".log"), "wb") as log:
            self._proc = subprocess.Popen(
                [sys.executable, __file__, str(self.stamps)],
                stdout=log,
                stderr=log,
                # A session of its own, like every job attempt: with autogrouping the
                # scheduler shares the CPUs between sessions before threads.
                start_new_session=True,
            )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._proc is not None
        self._proc.terminate()
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()

    def wait_steady(self, steps: int = 50, timeout: float = 300) -> None:
        """Return once the process has trained ``steps`` steps (past its own first,
        slower ones); raise if it died or did not get there within ``timeout`` s."""
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        while len(self._times()) < steps:
            if self._proc.poll() is not None:
                log = self.stamps.with_suffix(".log").read_text()[-2000:]
                raise RuntimeError(f"reference workload exited {self._proc.returncode}: {log}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"reference workload made no {steps} steps in {timeout} s")
            time.sleep(0.1)

    def rate(self, *spans: tuple[float, float]) -> float:
        """Steps per second the reference made over ``spans``, disjoint wall-clock
        ``(start, end)`` pairs."""
        times = self._times()
        steps = sum(
            bisect.bisect_right(times, end) - bisect.bisect_left(times, start)
            for start, end in spans
        )
        seconds = sum(end - start for start, end in spans)
        assert steps > 0 and seconds > 0, (spans, len(times))
        return steps / seconds

    def _times(self) -> list[float]:
        lines = self.stamps.read_text().splitlines()
        # The last line may be half written.
        return [float(line) for line in lines[:-1]]


def _train(stamps: Path) -> None:
    """Train the quickstart's GPT-2 shape (2 layers, 64 wide, batch 8 × 64 tokens) forever."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    # One thread, like a job's training loop under the test's OMP_NUM_THREADS=1.
    torch.set_num_threads(1)
    config = GPT2Config(vocab_size=512, n_positions=128, n_layer=2, n_head=2, n_embd=64)
    model = GPT2LMHeadModel(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batch = torch.randint(0, config.vocab_size, (8, 64))
    with open(stamps, "a", buffering=1) as out:
        while True:
            loss = model(input_ids=batch, labels=batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            out.write(f"{time.time()!r}\n")


if __name__ == "__main__":
    _train(Path(sys.argv[1]))
