"""``python -m nblaunch.runtime.rank BUNDLE RUN_DIR``: one rank of a multi-process job.

Started by torchrun with RANK / LOCAL_RANK / WORLD_SIZE set; the rank's kernel
inherits them. Rank 0 writes the job's ``output.ipynb``; every rank keeps its
own notebook, log and result under ``ranks/N/``. Each rank ends with
``os._exit`` after flushing: torch's C++ teardown after a distributed run
otherwise aborts now and then.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from nblaunch.runtime.execute import SignalForwarder, exit_code, run_notebook, write_json


def main(argv: list[str]) -> int:
    bundle, run_dir = Path(argv[0]), Path(argv[1])
    forwarder = SignalForwarder()
    forwarder.install()
    rank = int(os.environ["RANK"])
    folder = run_dir / "ranks" / str(rank)
    folder.mkdir(parents=True, exist_ok=True)
    spec = json.loads((bundle / "job.json").read_text())
    output = run_dir / "output.ipynb" if rank == 0 else folder / "output.ipynb"
    with open(folder / "stdout.log", "a") as out, open(folder / "stderr.log", "a") as err:
        result = run_notebook(
            bundle, output, folder, spec, forwarder,
            stdout=sys.stdout if rank == 0 else out,
            stderr=sys.stderr if rank == 0 else err,
        )  # fmt: skip
    write_json(folder / "result.json", result)
    return exit_code(result)


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
