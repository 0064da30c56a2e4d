"""The store's file: refused when it is not a readable nblaunch store, else opened.

A new store is made under a temporary name, given its schema, and linked into
place, so the file at ``nblaunch.db`` is always a whole store: an empty or
foreign file there is a fault to report, never something to rebuild. A store
that is refused is only read, never written, moved or deleted: the fix (move
it aside) is the user's.
"""

from __future__ import annotations

import os
import secrets
import shlex
import sqlite3
from pathlib import Path
from typing import NoReturn

from nblaunch.errors import StoreError
from nblaunch.home import PRIVATE_FILE
from nblaunch.queue import schema
from nblaunch.runtime.contract import Env

__all__ = ["open_store", "raise_fault", "store_fault"]

#: The first 16 bytes of every SQLite database file.
SQLITE_HEADER = b"SQLite format 3\x00"
#: Page size of a new store. Each transaction writes every page it touched to the
#: WAL, and a state change touches ~10 (job row, its indexes, the event row and
#: its index, the attempt row): 1 KiB pages write a quarter of the bytes per
#: commit that SQLite's default 4 KiB do, and sync a quarter at each checkpoint.
PAGE_SIZE = 1024
#: SQLite primary result codes: the file is not a (sound) database ...
_NOT_A_STORE = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB
#: ... or cannot be read or written by this user.
_NO_ACCESS = {3, 8, 10, 14, 23}  # SQLITE_PERM, _READONLY, _IOERR, _CANTOPEN, _AUTH


def open_store(path: Path) -> sqlite3.Connection:
    """A connection to the store at ``path``, creating or migrating it as needed.

    Raises ``StoreError`` (the path and the fix, in one line) when ``path`` is
    empty, not a database, another program's database, from a newer nblaunch,
    or not readable and writable by this user.
    """
    if not _exists_as_database(path):
        _create(path)
    return _connect(path)


def store_fault(path: Path, exc: sqlite3.Error) -> StoreError | None:
    """The ``StoreError`` an SQLite error means for the user, or None when it is
    not about the file (a constraint, a busy lock, a bug)."""
    code = getattr(exc, "sqlite_errorcode", None)  # Python >= 3.11
    primary = code & 0xFF if isinstance(code, int) else None
    reason = str(exc)
    if primary in _NOT_A_STORE or (
        primary is None and ("not a database" in reason or "malformed" in reason)
    ):
        return _not_a_store(path, reason)
    if primary in _NO_ACCESS or (
        primary is None and ("unable to open" in reason or "readonly" in reason)
    ):
        return StoreError(
            f"cannot use store {path} ({reason}); make it, its -wal and -shm files and its "
            f"folder readable and writable by you, or set {Env.HOME} to another folder"
        )
    return None


def raise_fault(path: Path, exc: sqlite3.Error) -> NoReturn:
    """Raise what ``exc`` means for the user: its ``StoreError``, else ``exc`` itself."""
    fault = store_fault(path, exc)
    if fault is None:
        raise exc
    raise fault from None


def _not_a_store(path: Path, reason: str) -> StoreError:
    aside = shlex.quote(f"{path}.corrupt")
    return StoreError(
        f"store {path} is not a readable nblaunch store ({reason}); move it aside "
        f"(mv {shlex.quote(str(path))} {aside}) and nblaunch starts a new one"
    )


def _exists_as_database(path: Path) -> bool:
    """Whether a store file is there; raises when one is there that SQLite must not
    open (an empty file would be taken for an empty database and silently rebuilt)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise StoreError(
            f"cannot read store {path} ({exc.strerror}); make it readable and writable "
            f"by you (chmod u+rw {shlex.quote(str(path))}) or move it aside"
        ) from None
    if not head:
        raise _not_a_store(path, "the file is empty")
    if head != SQLITE_HEADER:
        raise _not_a_store(path, "file is not a database")
    return True


def _create(path: Path) -> None:
    """Make a whole store at ``path``: built under a hidden name, then linked into
    place unless another process got there first (then theirs is used)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.new")
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
    except OSError as exc:
        raise StoreError(
            f"cannot create store {path} ({exc.strerror}); make {path.parent} writable "
            f"by you or set {Env.HOME} to a folder you can write"
        ) from None
    try:
        _connect(tmp, new=True).close()  # the last connection checkpoints: one whole file
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        except OSError:  # a file system without hard links
            if not path.exists():
                os.replace(tmp, path)
    finally:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{tmp}{suffix}").unlink(missing_ok=True)


def _connect(path: Path, *, new: bool = False) -> sqlite3.Connection:
    try:
        db = sqlite3.connect(
            path,
            timeout=60,
            isolation_level=None,
            check_same_thread=False,
            cached_statements=256,
        )
    except sqlite3.Error as exc:
        raise_fault(path, exc)
    try:
        db.row_factory = sqlite3.Row  # (``timeout`` above is SQLite's busy timeout)
        # Only reads until the file is known to be an nblaunch store.
        version = db.execute("PRAGMA user_version").fetchone()[0]
        tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if version > schema.VERSION:
            raise StoreError(
                f"store {path} has schema version {version}, newer than this nblaunch "
                f"({schema.VERSION}); upgrade nblaunch"
            )
        if version == 0 and tables:
            raise _not_a_store(path, "it holds another program's tables")
        if new:
            db.execute(f"PRAGMA page_size = {PAGE_SIZE}")  # before the first write
        db.execute("PRAGMA journal_mode = WAL")
        # WAL + NORMAL survives a process crash; only an OS crash can lose the last commits.
        db.execute("PRAGMA synchronous = NORMAL")
        if version < schema.VERSION:
            _migrate(db)
    except sqlite3.Error as exc:
        db.close()
        raise_fault(path, exc)
    except BaseException:
        db.close()
        raise
    return db


def _migrate(db: sqlite3.Connection) -> None:
    """Apply the migrations the store lacks, in one transaction (another process
    may have applied them meanwhile: the version is read again under the lock)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        for number in range(version, schema.VERSION):
            for statement in schema.MIGRATIONS[number].split(";"):
                if statement.strip():
                    db.execute(statement)
        db.execute(f"PRAGMA user_version = {schema.VERSION}")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
