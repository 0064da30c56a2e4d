"""Where nblaunch keeps its store, jobs and agent files for one user.

Everything under the home is the user's alone: the home and every folder
nblaunch makes in it are ``PRIVATE_DIR``, every file ``PRIVATE_FILE`` (stored
workspace objects ``READ_ONLY_FILE``, so a job cannot write through a link).
Each kind of file takes its mode where it is created, from these constants.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import stat
import tempfile
from pathlib import Path

from nblaunch.errors import StoreError
from nblaunch.runtime.contract import (
    PRIVATE_DIR,
    PRIVATE_FILE,
    READ_ONLY_FILE,
    Env,
    make_private_dir,
)

__all__ = ["PRIVATE_DIR", "PRIVATE_FILE", "READ_ONLY_FILE", "make_private_dir"]


def home() -> Path:
    """``$NBLAUNCH_HOME``, else the platform's user data dir; created on first use.

    Raises ``StoreError`` (one line: the path and the fix) when the home cannot
    be created or is not a folder the user can write, for every command, the
    ones that only read included.
    """
    configured = os.environ.get(Env.HOME)
    if configured:
        path = Path(configured).expanduser()
    else:
        from platformdirs import user_data_path

        path = user_data_path("nblaunch", appauthor=False)
    _ensure_home(path)
    return path.resolve()


#: Homes this process found usable: checked once, not on every call.
_usable: set[Path] = set()


def _ensure_home(path: Path) -> None:
    if path in _usable:
        return
    fix = f"set {Env.HOME} to a folder you can write"
    try:
        path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        st = path.stat()
    except FileExistsError:
        raise StoreError(f"nblaunch home {path} is not a folder; {fix}") from None
    except OSError as exc:
        raise StoreError(f"cannot create nblaunch home {path} ({exc.strerror}); {fix}") from None
    try:
        # A file with no name (O_TMPFILE) is the only test every file system answers
        # truly, for root too; nothing is left behind.
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise StoreError(
            f"nblaunch home {path} is not writable by you ({exc.strerror}); "
            f"make it yours (chmod u+rwx {shlex.quote(str(path))}) or {fix}"
        ) from None
    _tighten(path, st)
    _usable.add(path)


def _tighten(path: Path, st: os.stat_result) -> None:
    """Close a home an older nblaunch (or a loose umask) left open to others.

    Only a folder that is surely nblaunch's: the user's own, not shared (sticky,
    like ``/tmp``), not a file system's root, and either empty or holding a store.
    A folder of the user's things that holds no store keeps its mode; what
    nblaunch writes in it is private anyway.
    """
    mode = stat.S_IMODE(st.st_mode)
    if not mode & 0o077 or mode & stat.S_ISVTX or st.st_uid != os.geteuid():
        return
    if path.resolve().parent == path.resolve():
        return
    with os.scandir(path) as entries:
        empty = next(entries, None) is None
    if empty or store_path(path).is_file():
        with contextlib.suppress(OSError):
            os.chmod(path, mode & PRIVATE_DIR)


def store_path(root: Path) -> Path:
    return root / "nblaunch.db"


def queues_file(root: Path) -> Path:
    return root / "queues.toml"


def jobs_dir(root: Path) -> Path:
    return root / "jobs"


def objects_dir(root: Path) -> Path:
    """The content-addressed store of workspace files that bundles link to."""
    return root / "objects"
