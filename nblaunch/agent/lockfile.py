"""Cross-process locks and the agent's wake-up channel, all files in ``$NBLAUNCH_HOME``."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nblaunch.runtime.contract import PRIVATE_FILE


def agent_lock_path(root: Path) -> Path:
    return root / "agent.lock"


def wake_path(root: Path) -> Path:
    return root / "agent.wake"


@contextmanager
def held(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` for the block (blocking)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def try_hold(path: Path) -> int | None:
    """Take the lock without waiting: its fd (keep it open to keep the lock), or None."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def holder_pid(root: Path) -> int | None:
    """Pid of the live agent of ``root``, or None when no agent holds the lock."""
    path = agent_lock_path(root)
    fd = try_hold(path)
    if fd is not None:
        os.close(fd)
        return None
    try:
        return int(path.read_text().strip() or 0) or None
    except (OSError, ValueError):
        return None


def wake(root: Path) -> bool:
    """Nudge the agent of ``root``; False when no agent is listening."""
    try:
        fd = os.open(wake_path(root), os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno in (errno.ENXIO, errno.ENOENT):
            return False
        raise
    try:
        os.write(fd, b"!")
    except BlockingIOError:
        pass  # the pipe is full of earlier nudges: the agent will wake anyway
    finally:
        os.close(fd)
    return True


def open_wake_channel(root: Path) -> tuple[int, int]:
    """The agent's end: a read fd to select on, and a write fd kept open so the
    FIFO never reports end-of-file between nudges."""
    path = wake_path(root)
    if not path.exists():
        with contextlib.suppress(FileExistsError):
            os.mkfifo(path, PRIVATE_FILE)
    read_fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    write_fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    return read_fd, write_fd


def drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass
