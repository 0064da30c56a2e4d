"""The workspace: which files travel, the size refusal, storage once, writable copies."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from nblaunch.errors import SpecError
from nblaunch.jobs.workspace import (
    WorkspaceFile,
    check_size,
    list_workspace,
    store_workspace,
)
from nblaunch.runtime.contract import PRIVATE_FILE
from nblaunch.runtime.workspace import materialize

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def write(path: Path, text: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def rels(folder: Path) -> list[str]:
    return [f.rel for f in list_workspace(folder)]


def objects(objects_dir: Path) -> list[Path]:
    return sorted(p for p in objects_dir.glob("??/*") if p.is_file())


@pytest.fixture
def no_git_above(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder git will not take for part of a repository, wherever tmp_path lies."""
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    folder = tmp_path / "ws"
    folder.mkdir()
    return folder


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with the notebook folder ``nb/`` one level down."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    write(root / ".gitignore", "*.log\n")
    write(root / "outside.py")
    write(root / "nb" / "helper.py", "def f(): return 1\n")
    write(root / "nb" / "gone.py")
    git(root, "add", ".gitignore", "outside.py", "nb/helper.py", "nb/gone.py")
    (root / "nb" / "gone.py").unlink()  # tracked, deleted on disk
    write(root / "nb" / "data" / "x.csv", "a,b\n1,2\n")  # untracked, not ignored
    write(root / "nb" / "run.log")  # ignored by .gitignore
    return root


@needs_git
def test_git_folder_lists_tracked_and_untracked_not_ignored(repo: Path) -> None:
    files = list_workspace(repo / "nb")
    assert [f.rel for f in files] == ["data/x.csv", "helper.py"]
    helper = files[1]
    assert helper.path == (repo / "nb" / "helper.py").resolve()
    assert helper.path.is_absolute()
    assert helper.size == len("def f(): return 1\n")


@needs_git
def test_git_folder_honours_nblaunchignore(repo: Path) -> None:
    write(repo / "nb" / ".nblaunchignore", "data/\n")
    write(repo / "nb" / "scratch.tmp")
    write(repo / "nb" / "sub" / ".nblaunchignore", "*.tmp\n")
    write(repo / "nb" / "sub" / "keep.py")
    write(repo / "nb" / "sub" / "drop.tmp")
    assert rels(repo / "nb") == [
        ".nblaunchignore",
        "helper.py",
        "scratch.tmp",
        "sub/.nblaunchignore",
        "sub/keep.py",
    ]


def test_plain_folder_lists_every_regular_file(no_git_above: Path) -> None:
    ws = no_git_above
    write(ws / "a.py", "print(1)\n")
    write(ws / "sub" / "b.txt")
    write(ws / ".git" / "junk")  # not a repository: git refuses it, and it is skipped
    (ws / "link.py").symlink_to(ws / "a.py")
    (ws / "linkdir").symlink_to(ws / "sub", target_is_directory=True)
    (ws / "broken").symlink_to(ws / "missing")
    files = list_workspace(ws)
    assert [f.rel for f in files] == ["a.py", "link.py", "sub/b.txt"]
    assert files[1].size == len("print(1)\n")


def test_plain_folder_honours_nblaunchignore(no_git_above: Path) -> None:
    ws = no_git_above
    write(ws / ".nblaunchignore", "big/\n*.ckpt\n!keep.ckpt\n")
    write(ws / "big" / "weights.bin")
    write(ws / "model.ckpt")
    write(ws / "keep.ckpt")
    write(ws / "sub" / ".nblaunchignore", "/local.txt\n")
    write(ws / "sub" / "local.txt")
    write(ws / "local.txt")
    assert rels(ws) == [".nblaunchignore", "keep.ckpt", "local.txt", "sub/.nblaunchignore"]


@needs_git
def test_a_home_inside_the_folder_never_travels(repo: Path, no_git_above: Path) -> None:
    write(repo / "nb" / "home" / "jobs" / "bundle.txt")  # untracked, not ignored
    assert [f.rel for f in list_workspace(repo / "nb", exclude=[repo / "nb" / "home"])] == [
        "data/x.csv",
        "helper.py",
    ]
    write(no_git_above / "a.py")
    write(no_git_above / "home" / "nblaunch.db")
    assert rels_excluding(no_git_above, no_git_above / "home") == ["a.py"]
    assert list_workspace(no_git_above, exclude=[no_git_above]) == []


def rels_excluding(folder: Path, home: Path) -> list[str]:
    return [f.rel for f in list_workspace(folder, exclude=[home])]


def test_not_a_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="not a folder"):
        list_workspace(tmp_path / "nope")


def test_check_size_names_the_largest_files_and_the_fix(no_git_above: Path) -> None:
    ws = no_git_above
    with open(ws / "big.bin", "wb") as f:
        f.truncate(150_000_000)  # sparse: instant, takes no disk
    write(ws / "data" / "x.csv", "1" * 200_000)
    write(ws / "a.py")
    write(ws / "b.py")
    files = list_workspace(ws)
    with pytest.raises(SpecError) as caught:
        check_size(ws, files, 100_000_000)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"workspace {ws} is 150.2 MB, over the 100 MB limit; ")
    assert "largest: big.bin (150.0 MB), data/x.csv (0.2 MB), a.py (0.0 MB);" in message
    assert f"add them to {ws / '.nblaunchignore'}" in message
    assert "--workspace-limit" in message
    check_size(ws, files, 200_000_000)


def test_check_size_passes_at_the_limit() -> None:
    files = [WorkspaceFile(rel="a", path=Path("/a"), size=10)]
    check_size(Path("/x"), files, 10)
    with pytest.raises(SpecError, match="over the 2e-06 MB limit"):
        check_size(Path("/x"), files, 2)


def test_store_twice_adds_no_object_and_hardlinks(no_git_above: Path, tmp_path: Path) -> None:
    ws = no_git_above
    write(ws / "helper.py", "def f(): return 1\n")
    write(ws / "data" / "x.csv", "a,b\n")
    write(ws / "data" / "copy.csv", "a,b\n")  # same content: one object
    objects_dir = tmp_path / "objects"

    first = store_workspace(list_workspace(ws), objects_dir, tmp_path / "b1")
    stored = objects(objects_dir)
    assert len(stored) == 2
    second = store_workspace(list_workspace(ws), objects_dir, tmp_path / "b2")
    assert objects(objects_dir) == stored
    assert first == second

    expected = hashlib.sha256(b"def f(): return 1\n").hexdigest()
    assert first["files"]["helper.py"] == {"sha256": expected, "size": 18}
    assert first["bytes"] == 18 + 4 + 4
    for bundle in ("b1", "b2"):
        for rel, entry in first["files"].items():
            copy = tmp_path / bundle / rel
            assert copy.read_bytes() == (ws / rel).read_bytes()
            obj = objects_dir / entry["sha256"][:2] / entry["sha256"]
            assert copy.stat().st_ino == obj.stat().st_ino
            assert obj.stat().st_mode & 0o777 == 0o400


def test_store_sees_an_edit_that_keeps_size_and_mtime(no_git_above: Path, tmp_path: Path) -> None:
    ws = no_git_above
    path = write(ws / "a.txt", "one")
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))  # old enough to be remembered
    objects_dir = tmp_path / "objects"
    first = store_workspace(list_workspace(ws), objects_dir, tmp_path / "b1")
    assert first["files"]["a.txt"]["sha256"] in (objects_dir / "hash-cache.json").read_text()

    time.sleep(0.02)  # past a coarse ctime tick, so the rewrite changes ctime
    path.write_text("two")
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    second = store_workspace(list_workspace(ws), objects_dir, tmp_path / "b2")
    assert second["files"]["a.txt"]["sha256"] == hashlib.sha256(b"two").hexdigest()
    assert (tmp_path / "b2" / "a.txt").read_text() == "two"
    assert len(objects(objects_dir)) == 2


def test_materialize_gives_writable_copies(no_git_above: Path, tmp_path: Path) -> None:
    ws = no_git_above
    write(ws / "helper.py", "def f(): return 1\n")
    write(ws / "data" / "x.csv", "a,b\n")
    objects_dir = tmp_path / "objects"
    manifest = store_workspace(list_workspace(ws), objects_dir, tmp_path / "bundle")
    attempt = tmp_path / "attempt"
    write(attempt / "notebook.ipynb", "{}")  # the attempt folder already exists

    materialize(tmp_path / "bundle", attempt)

    obj = objects_dir / manifest["files"]["data/x.csv"]["sha256"][:2]
    obj = obj / manifest["files"]["data/x.csv"]["sha256"]
    copy = attempt / "data" / "x.csv"
    assert copy.stat().st_ino != obj.stat().st_ino
    assert copy.stat().st_mode & 0o777 == PRIVATE_FILE  # writable, and the user's alone
    with open(copy, "a") as f:
        f.write("3,4\n")
    assert obj.read_text() == "a,b\n"
    assert (attempt / "helper.py").read_text() == "def f(): return 1\n"
    assert (attempt / "notebook.ipynb").read_text() == "{}"
