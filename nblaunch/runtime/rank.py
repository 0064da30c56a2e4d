"""``python -m nblaunch.runtime.rank BUNDLE RUN_DIR``: one rank of a multi-process job.

Started by torchrun with RANK / LOCAL_RANK / WORLD_SIZE set; the rank's kernel
inherits them and works in the attempt's workspace. Every rank keeps its log
and result under ``ranks/N/``; rank 0's output notebook is the job's
``output.ipynb`` and its streams also go to the job's logs, the others keep
their notebook beside their log. Each rank ends with ``os._exit`` after
flushing: torch's C++ teardown after a distributed run otherwise aborts now
and then.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import IO, cast

from nblaunch.runtime.contract import BUNDLE_SPEC, RunDir, make_private_dir, open_private
from nblaunch.runtime.notebook import SignalForwarder, run_notebook


def main(argv: list[str]) -> int:
    bundle, run = Path(argv[0]), RunDir(Path(argv[1]))
    rank = int(os.environ["RANK"])
    folder = run.rank(rank)
    make_private_dir(folder.path)
    forwarder = SignalForwarder(folder.preempt_marker)
    forwarder.install()
    spec = json.loads((bundle / BUNDLE_SPEC).read_text())
    output = run.output if rank == 0 else folder.output
    with (
        os.fdopen(open_private(folder.stdout), "a") as out_log,
        os.fdopen(open_private(folder.stderr), "a") as err_log,
    ):
        out: IO[str] = out_log
        err: IO[str] = err_log
        if rank == 0:  # rank 0 speaks for the job: its streams go to the job's logs as well
            out, err = cast(IO[str], Tee(out, sys.stdout)), cast(IO[str], Tee(err, sys.stderr))
        result = run_notebook(
            bundle, output, run.workspace, spec, forwarder, run.kernel_ready, out, err
        )
    result.write(folder.result)
    return result.outcome.exit_code


class Tee:
    """Writes and flushes several text streams as one (all papermill asks of a stream)."""

    def __init__(self, *streams: IO[str]) -> None:
        self._streams = streams

    def write(self, text: str) -> int:
        for stream in self._streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self._streams:
            stream.flush()


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
