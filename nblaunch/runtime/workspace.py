"""The attempt's working directory: its own copy of the workspace the bundle carries.

Copies, not links: a job that rewrites a file in place must never change the
submitted snapshot, which later attempts and resubmissions share.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from nblaunch.runtime.contract import PRIVATE_FILE


def materialize(src: Path, dest: Path) -> None:
    """Copy the stored workspace ``src`` into ``dest`` as writable files.

    A bundle without a workspace gives an empty ``dest``. Files an earlier
    start of the same attempt already copied are copied again: the copy is
    what the notebook starts from.
    """
    dest.mkdir(parents=True, exist_ok=True)
    if not src.is_dir():
        return
    for folder, dirs, files in os.walk(src):
        target = dest / Path(folder).relative_to(src)
        for name in dirs:
            (target / name).mkdir(exist_ok=True)
        for name in files:
            copied = target / name
            copied.unlink(missing_ok=True)  # never write through an existing link
            shutil.copyfile(Path(folder) / name, copied)
            copied.chmod(PRIVATE_FILE)
