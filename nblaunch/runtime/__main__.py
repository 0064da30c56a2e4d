"""``python -m nblaunch.runtime BUNDLE RUN_DIR``: run one attempt of a job.

``python -m nblaunch.runtime --warm`` imports what an attempt needs, then waits
for the attempt on stdin (the local runner keeps one such runtime ready).
``python -m nblaunch.runtime FOLDER`` is a W&B Launch job's entrypoint, run in
the job's folder (``nblaunch.runtime.wandb_launch``).
"""

import os
import sys
from pathlib import Path

from nblaunch.runtime.execute import main, serve_warm

args = sys.argv[1:]
if args == ["--warm"]:
    code = serve_warm()
elif len(args) == 1 and Path(args[0]).is_dir():
    from nblaunch.runtime.wandb_launch import launch_attempt

    code = launch_attempt(Path(args[0]))
else:
    code = main(args)
# result.json is written and the kernel is gone: skip interpreter teardown (zmq
# and papermill threads take a few hundred ms) so the next attempt starts sooner.
sys.stdout.flush()
sys.stderr.flush()
os._exit(code)
