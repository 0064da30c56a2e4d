"""What runs inside a job. Imports nothing from the faces, the queue or the runners.

``preempted()`` and ``on_preempt(fn)`` serve custom training loops::

    from nblaunch.runtime import preempted
    for step in range(start, max_steps):
        train_step()
        if preempted():
            save_checkpoint(step)
            break
"""

from nblaunch.runtime.kernel import Preempted, on_preempt, preempted
from nblaunch.runtime.metrics import log

__all__ = ["Preempted", "log", "on_preempt", "preempted"]
