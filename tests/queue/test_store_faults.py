"""A home or store nblaunch cannot use: one line naming the path and the fix, exit
code 2, no traceback, and the file left exactly as it was. Files nblaunch makes
are the user's alone."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import sqlite3
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import nblaunch
from nblaunch.errors import StoreError
from nblaunch.queue import schema
from nblaunch.queue.store import Store
from tests.conftest import make_notebook, run_cli, write_queues

#: Lock files a command may create before it opens the store; they hold no data.
LOCKS = {"agent.lock", "spawn.lock"}


def one_line_error(done: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def files(root: Path) -> dict[str, tuple[int, str]]:
    """Every file under ``root`` but the lock files: relative path -> (mode, sha256)."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.name not in LOCKS:
            out[str(path.relative_to(root))] = (
                stat.S_IMODE(path.stat().st_mode),
                hashlib.sha256(path.read_bytes()).hexdigest(),
            )
    return out


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A ``$NBLAUNCH_HOME`` for stores no agent can open (``nbl_home`` opens its
    store when it ends); nothing here starts an agent."""
    root = tmp_path / "home"
    root.mkdir(mode=0o700)
    monkeypatch.setenv("NBLAUNCH_HOME", str(root))
    return root


@pytest.fixture
def notebook(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    return make_notebook(folder / "nb.ipynb", "print(x)", params="x = 1")


def real_store(path: Path) -> None:
    """A real (empty) store at ``path``, closed: its WAL checkpointed into the file."""
    store = Store(path)
    store.close()


# -- stores nblaunch refuses --------------------------------------------------


def corrupt_random(db: Path) -> None:
    db.write_bytes(random.Random(1).randbytes(8192))


def corrupt_pages(db: Path) -> None:
    """A real store's header, then garbage: SQLite itself refuses it."""
    real_store(db)
    data = bytearray(db.read_bytes())
    data[100:] = random.Random(2).randbytes(len(data) - 100)
    db.write_bytes(bytes(data))


def zero_length(db: Path) -> None:
    db.write_bytes(b"")


def foreign_database(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
        conn.execute("INSERT INTO notes VALUES ('mine')")
    conn.close()


def newer_schema(db: Path) -> None:
    real_store(db)
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA user_version = {schema.VERSION + 1}")
    conn.close()


FAULTS = {
    "random bytes": (corrupt_random, ["not a readable nblaunch store", "file is not a database"]),
    "garbage pages": (corrupt_pages, ["not a readable nblaunch store"]),
    "zero length": (zero_length, ["not a readable nblaunch store", "empty"]),
    "another program's database": (foreign_database, ["not a readable nblaunch store"]),
    "newer schema": (newer_schema, ["newer than this nblaunch", "upgrade nblaunch"]),
}


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("command", [["jobs"], ["agent", "--status"]])
def test_a_store_nblaunch_cannot_read_is_reported_and_left_alone(
    home: Path, fault: str, command: list[str]
) -> None:
    make, needles = FAULTS[fault]
    db = home / "nblaunch.db"
    make(db)
    before = files(home)

    line = one_line_error(run_cli(*command), str(db), *needles)

    if fault != "newer schema":
        assert f"mv {db} {db}.corrupt" in line and "starts a new one" in line
    assert files(home) == before  # not rebuilt, emptied, moved or deleted; no -wal


@pytest.mark.parametrize(
    "command", [["queues"], ["show", "deadbeef"], ["cancel", "deadbeef"], ["metrics", "x"]]
)
def test_every_command_reports_a_corrupt_store(home: Path, command: list[str]) -> None:
    db = home / "nblaunch.db"
    corrupt_random(db)
    before = files(home)
    one_line_error(run_cli(*command), str(db), "move it aside")
    assert files(home) == before


def test_submit_to_a_corrupt_store_writes_no_job(home: Path, notebook: Path) -> None:
    db = home / "nblaunch.db"
    corrupt_random(db)
    before = files(home)
    one_line_error(run_cli("submit", str(notebook)), str(db), "move it aside")
    assert files(home) == before
    assert not (home / "jobs").exists()


def test_moving_the_store_aside_is_the_fix(nbl_home: Path) -> None:
    db = nbl_home / "nblaunch.db"
    zero_length(db)
    one_line_error(run_cli("jobs"), str(db))
    db.rename(nbl_home / "nblaunch.db.corrupt")
    done = run_cli("jobs")
    assert done.returncode == 0, done.stderr
    assert db.stat().st_size > 0
    assert (nbl_home / "nblaunch.db.corrupt").stat().st_size == 0


def test_the_api_raises_store_error(tmp_path: Path) -> None:
    db = tmp_path / "nblaunch.db"
    corrupt_random(db)
    with pytest.raises(StoreError, match="move it aside"):
        Store(db)
    zero_length(db)
    with pytest.raises(StoreError, match="empty"):
        Store(db)
    assert db.stat().st_size == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nblaunch.db"]


def test_stores_opened_at_once_make_one_whole_store(tmp_path: Path) -> None:
    db = tmp_path / "nblaunch.db"
    errors: list[BaseException] = []
    stores: list[Store] = []

    def open_one() -> None:
        try:
            stores.append(Store(db))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for store in stores:
        assert store.jobs() == []
        store.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nblaunch.db"]


# -- homes nblaunch cannot use --------------------------------------------------

HOME_COMMANDS = [["jobs"], ["agent", "--status"], ["queues"], ["show", "deadbeef"], ["agent"]]
EVERY_COMMAND = [
    *HOME_COMMANDS,
    ["logs", "deadbeef"],
    ["cancel", "deadbeef"],
    ["preempt", "deadbeef"],
    ["metrics", "deadbeef"],
    ["estimate", "--params", "124M", "--tokens", "1B", "--gpu", "CPU"],
]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc")
@pytest.mark.parametrize("command", EVERY_COMMAND)
def test_a_home_that_cannot_be_created(home: Path, command: list[str]) -> None:
    target = "/proc/nblaunch-home"
    one_line_error(
        run_cli(*command, NBLAUNCH_HOME=target),
        f"cannot create nblaunch home {target}",
        "NBLAUNCH_HOME",
    )
    assert not Path(target).exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc")
@pytest.mark.parametrize("command", HOME_COMMANDS)
def test_a_home_nobody_can_write(home: Path, command: list[str]) -> None:
    """``/proc`` refuses new files to root too; its mode is never touched."""
    before = mode(Path("/proc"))
    one_line_error(
        run_cli(*command, NBLAUNCH_HOME="/proc"),
        "nblaunch home /proc is not writable by you",
        "NBLAUNCH_HOME",
    )
    assert mode(Path("/proc")) == before


def test_submit_to_a_home_that_cannot_be_created(home: Path, notebook: Path) -> None:
    target = notebook.parent / "a-file"
    target.write_text("not a folder")
    one_line_error(
        run_cli("submit", str(notebook), NBLAUNCH_HOME=str(target)),
        f"nblaunch home {target} is not a folder",
        "NBLAUNCH_HOME",
    )
    assert target.read_text() == "not a folder"


def run_cli_as_user(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``run_cli``, but root runs it without the capabilities that let it write
    where folder modes say no (``setpriv``), so a read-only folder is read-only."""
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("root ignores folder modes, and setpriv is not installed")
        caps = "-dac_override,-dac_read_search"
        prefix = [setpriv, f"--bounding-set={caps}", f"--inh-caps={caps}", "--"]
    return subprocess.run(
        [*prefix, sys.executable, "-m", "nblaunch", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
        check=False,
    )


@pytest.mark.parametrize("command", HOME_COMMANDS)
def test_a_read_only_home(tmp_path: Path, command: list[str]) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    real_store(home / "nblaunch.db")
    before = files(home)
    home.chmod(0o500)
    try:
        one_line_error(
            run_cli_as_user(*command, NBLAUNCH_HOME=str(home)),
            f"nblaunch home {home} is not writable by you",
            f"chmod u+rwx {home}",
        )
        assert mode(home) == 0o500
    finally:
        home.chmod(0o700)
    assert files(home) == before


def test_a_store_the_user_cannot_read(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    db = home / "nblaunch.db"
    real_store(db)
    before = files(home)
    db.chmod(0o000)
    try:
        one_line_error(
            run_cli_as_user("jobs", NBLAUNCH_HOME=str(home)),
            f"cannot read store {db}",
            "chmod u+rw",
        )
    finally:
        db.chmod(0o600)
    assert files(home) == before


# -- queues.toml --------------------------------------------------------------


@pytest.mark.parametrize("command", ["queues", "submit"])
def test_a_queues_file_that_is_not_utf8(home: Path, notebook: Path, command: str) -> None:
    path = home / "queues.toml"
    write_queues(home, "")
    path.write_bytes(b'[queues.gpu]\nrunner = "local"\n# caf\xe9 au lait\n')
    args = ["submit", str(notebook)] if command == "submit" else ["queues"]
    one_line_error(run_cli(*args), str(path), "not UTF-8", "save it as UTF-8")
    assert not (home / "jobs").exists()
    assert path.read_bytes().endswith(b"caf\xe9 au lait\n")


# -- modes --------------------------------------------------------------------


def test_a_new_home_and_store_are_private(tmp_path: Path) -> None:
    home = tmp_path / "new" / "home"
    done = run_cli("jobs", NBLAUNCH_HOME=str(home))
    assert done.returncode == 0, done.stderr
    assert mode(home) == 0o700
    assert mode(home / "nblaunch.db") == 0o600
    assert sorted(p.name for p in home.iterdir() if p.name not in LOCKS) == ["nblaunch.db"]

    store = Store(home / "nblaunch.db")  # -wal and -shm exist while a connection is open
    try:
        store.register_agent(["local"])
        for suffix in ("-wal", "-shm"):
            assert mode(home / f"nblaunch.db{suffix}") == 0o600, suffix
    finally:
        store.close()


def test_an_existing_home_is_tightened_but_a_folder_of_the_users_is_not(tmp_path: Path) -> None:
    old = tmp_path / "old"
    old.mkdir()
    real_store(old / "nblaunch.db")
    old.chmod(0o755)
    assert run_cli("jobs", NBLAUNCH_HOME=str(old)).returncode == 0
    assert mode(old) == 0o700

    empty = tmp_path / "empty"  # made for nblaunch: becomes its home
    empty.mkdir(mode=0o755)
    assert run_cli("jobs", NBLAUNCH_HOME=str(empty)).returncode == 0
    assert mode(empty) == 0o700

    named = tmp_path / "named"  # the user's things: nblaunch's own files in it are private
    named.mkdir()
    (named / "notes.txt").write_text("mine")
    named.chmod(0o750)
    assert run_cli("jobs", NBLAUNCH_HOME=str(named)).returncode == 0
    assert mode(named) == 0o750
    assert mode(named / "nblaunch.db") == 0o600


def test_what_a_submit_writes_is_private(nbl_home: Path, notebook: Path) -> None:
    project = notebook.parent
    (project / "data").mkdir()
    (project / "data" / "x.csv").write_text("a,b\n")
    user_modes = {p: mode(p) for p in [project, *project.rglob("*")]}

    done = run_cli("submit", str(notebook), "--json")
    assert done.returncode == 0, done.stderr

    assert mode(nbl_home) == 0o700
    for name in ("nblaunch.db", "agent.log"):
        assert mode(nbl_home / name) == 0o600, name
    made = [p for p in nbl_home.rglob("*") if p.name not in LOCKS]
    bundle_and_objects = [
        p for p in made if p.is_relative_to(nbl_home / "objects") or "bundle" in p.parts
    ]
    assert any(p.name == "job.json" for p in bundle_and_objects)
    assert any(p.name == "x.csv" for p in bundle_and_objects)
    for path in bundle_and_objects:
        if path.is_dir():
            assert mode(path) == 0o700, path
        elif path.parent.parent.name == "objects" or "workspace" in path.parts:
            assert mode(path) == 0o400, path  # a stored object and its links: read-only
        else:
            assert mode(path) == 0o600, path
    for folder in (nbl_home / "jobs", nbl_home / "objects"):
        assert mode(folder) == 0o700
    # The user's own notebook folder keeps its modes.
    assert {p: mode(p) for p in user_modes} == user_modes

    # What the attempt writes: its folder, logs, result and metrics, the user's alone.
    job = nblaunch.Job(json.loads(done.stdout)["id"])
    assert job.wait(timeout=120).value == "succeeded", job.logs()
    run = job.run()
    assert run is not None
    for path in (run.path, run.logs):
        assert mode(path) == 0o700, path
    written = [run.stdout, run.stderr, run.result, run.runtime_process, run.output]
    for path in written + [run.metrics] * run.metrics.exists():
        assert mode(path) == 0o600, path
