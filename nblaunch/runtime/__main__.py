"""``python -m nblaunch.runtime BUNDLE RUN_DIR``: run one attempt of a job."""

import sys

from nblaunch.runtime.execute import main

sys.exit(main(sys.argv[1:]))
