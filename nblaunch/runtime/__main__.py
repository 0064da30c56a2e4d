"""``python -m nblaunch.runtime BUNDLE RUN_DIR``: run one attempt of a job.

``python -m nblaunch.runtime --warm`` imports what an attempt needs, then waits
for the attempt on stdin (the local runner keeps one such runtime ready).
"""

import os
import sys

from nblaunch.runtime.execute import main, serve_warm

code = serve_warm() if sys.argv[1:] == ["--warm"] else main(sys.argv[1:])
# result.json is written and the kernel is gone: skip interpreter teardown (zmq
# and papermill threads take a few hundred ms) so the next attempt starts sooner.
sys.stdout.flush()
sys.stderr.flush()
os._exit(code)
