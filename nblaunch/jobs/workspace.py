"""The workspace: the notebook's folder, carried with the job.

A notebook leans on its folder: ``import helper``, ``open("data/x.csv")`` and
``%run other.ipynb`` all resolve against it. So a job carries that folder and
runs in its attempt's own copy of it, as it would in Jupyter.

Which files travel: in a git repository, the tracked files plus the untracked
ones git does not ignore; elsewhere, every regular file. ``.nblaunchignore``
files (gitignore syntax, read like ``.gitignore`` files) leave out more.

Files are stored content-addressed, once each, under ``objects/<h[:2]>/<h>``
(sha256) and hardlinked into the bundle, so resubmitting an unchanged folder
stores nothing new. An attempt gets real, writable copies
(``nblaunch.runtime.workspace.materialize``), so a job writing a file in place
never changes a stored object.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pathspec

from nblaunch.errors import SpecError
from nblaunch.home import PRIVATE_DIR, READ_ONLY_FILE, make_private_dir

__all__ = [
    "IGNORE_FILE",
    "WorkspaceFile",
    "check_size",
    "list_workspace",
    "store_workspace",
]

IGNORE_FILE = ".nblaunchignore"
_CHUNK = 1 << 20
_HASH_CACHE = "hash-cache.json"
_HASH_CACHE_MAX = 20_000
# A file modified this recently may change again within the same mtime tick, so
# its hash is not remembered across calls (git's "racy clean" problem).
_RACY_NS = 2_000_000_000


@dataclass(frozen=True)
class WorkspaceFile:
    """One file of a workspace.

    Attributes
    ----------
    rel : str
        Path relative to the workspace folder, with ``/`` separators.
    path : Path
        Absolute path on disk (a symlink to a file is stored as that file's content).
    size : int
        Size in bytes when listed.
    """

    rel: str
    path: Path
    size: int


def list_workspace(folder: Path, exclude: Sequence[Path] = ()) -> list[WorkspaceFile]:
    """List the files of ``folder`` that travel with a job, sorted by ``rel``.

    Parameters
    ----------
    folder : Path
        The notebook's folder.
    exclude : sequence of Path
        Folders never listed nor walked, even inside ``folder`` (nblaunch's own
        home and a queue's run folder, which hold every bundle).

    Returns
    -------
    list of WorkspaceFile
        Regular files only: symlinks to folders, broken links and files that
        are tracked but deleted are left out.
    """
    root = folder.resolve()
    if not root.is_dir():
        raise SpecError(f"workspace {folder} is not a folder")
    rules = _IgnoreRules(root)
    skip = {rel for rel in (_inside_rel(root, folder) for folder in exclude) if rel is not None}
    listed = _git_listing(root)
    if listed is None:
        rels: Iterable[str] = _walk(root, rules, skip)
    else:
        rels = (r for r in listed if not rules.excludes(r) and not _under(r, skip))
    files = []
    for rel in rels:
        path = root / rel
        try:
            st = path.stat()
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            files.append(WorkspaceFile(rel=rel, path=path, size=st.st_size))
    return sorted(files, key=lambda f: f.rel)


def check_size(folder: Path, files: Sequence[WorkspaceFile], limit_bytes: int) -> None:
    """Refuse, in one line naming the largest files, a workspace over ``limit_bytes``."""
    total = sum(f.size for f in files)
    if total <= limit_bytes:
        return
    largest = sorted(files, key=lambda f: (-f.size, f.rel))[:3]
    names = ", ".join(f"{f.rel} ({_mb(f.size)})" for f in largest)
    raise SpecError(
        f"workspace {folder} is {_mb(total)}, over the {limit_bytes / 1e6:g} MB limit; "
        f"largest: {names}; add them to {folder / IGNORE_FILE} or raise the limit "
        "(--workspace-limit MB, or workspace_limit_mb in the queue)"
    )


def store_workspace(
    files: Iterable[WorkspaceFile], objects_dir: Path, dest: Path
) -> dict[str, Any]:
    """Store each file once under ``objects_dir`` and hardlink it to ``dest/<rel>``.

    Parameters
    ----------
    files : iterable of WorkspaceFile
        What :func:`list_workspace` returned.
    objects_dir : Path
        The content-addressed store, shared by all jobs.
    dest : Path
        The bundle's workspace folder; created if missing.

    Returns
    -------
    dict
        The manifest: ``{"files": {rel: {"sha256": h, "size": n}}, "bytes": total}``.
    """
    make_private_dir(objects_dir)
    cache_path = objects_dir / _HASH_CACHE
    cache = _load_cache(cache_path)
    remembered: dict[str, str] = {}
    racy_after = time.time_ns() - _RACY_NS
    manifest: dict[str, dict[str, Any]] = {}
    total = 0
    for f in files:
        target = _inside(dest, f.rel)
        try:
            st = f.path.stat()
            key = f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"
            digest = remembered.get(key) or cache.get(key)
            if digest is None or not _object(objects_dir, digest).exists():
                digest = _ingest(f.path, objects_dir)
        except (FileNotFoundError, PermissionError) as e:
            raise SpecError(
                f"cannot read workspace file {f.path} ({e.strerror}); "
                f"fix its permissions or add {f.rel} to {IGNORE_FILE}"
            ) from None
        remembered[key] = digest
        if st.st_mtime_ns < racy_after:
            cache.pop(key, None)
            cache[key] = digest
        _link(_object(objects_dir, digest), target)
        manifest[f.rel] = {"sha256": digest, "size": st.st_size}
        total += st.st_size
    _save_cache(cache_path, cache)
    return {"files": manifest, "bytes": total}


class _IgnoreRules:
    """The ``.nblaunchignore`` files under a folder, applied as git applies ``.gitignore``:
    a file's patterns are relative to its folder, deeper files win, and nothing
    under an excluded folder comes back."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._specs: dict[str, pathspec.GitIgnoreSpec | None] = {}
        self._dirs: dict[str, bool] = {"": False}

    def excludes(self, rel: str) -> bool:
        parent = rel.rpartition("/")[0]
        return self.excludes_dir(parent) or self._matches(rel, is_dir=False)

    def excludes_dir(self, rel: str) -> bool:
        if rel not in self._dirs:
            parent = rel.rpartition("/")[0]
            self._dirs[rel] = self.excludes_dir(parent) or self._matches(rel, is_dir=True)
        return self._dirs[rel]

    def _matches(self, rel: str, *, is_dir: bool) -> bool:
        parts = rel.split("/")
        verdict = False
        for depth in range(len(parts)):
            spec = self._spec("/".join(parts[:depth]))
            if spec is None:
                continue
            sub = "/".join(parts[depth:]) + ("/" if is_dir else "")
            include = spec.check_file(sub).include
            if include is not None:
                verdict = include
        return verdict

    def _spec(self, dir_rel: str) -> pathspec.GitIgnoreSpec | None:
        if dir_rel not in self._specs:
            path = self._root / dir_rel / IGNORE_FILE
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                self._specs[dir_rel] = None
            else:
                self._specs[dir_rel] = pathspec.GitIgnoreSpec.from_lines(lines)
        return self._specs[dir_rel]


def _git_listing(root: Path) -> list[str] | None:
    """Tracked and untracked-but-not-ignored files under ``root``, relative to it;
    ``None`` when git is missing or ``root`` is not in a repository."""
    try:
        done = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=root,
            capture_output=True,
            check=False,
        )
    except OSError:
        return None
    if done.returncode != 0:
        return None
    # An unmerged path is listed once per stage.
    return list(dict.fromkeys(os.fsdecode(p) for p in done.stdout.split(b"\0") if p))


def _inside_rel(root: Path, folder: Path | None) -> str | None:
    """``folder`` relative to ``root`` (posix), when it lies inside it."""
    if folder is None:
        return None
    try:
        rel = folder.resolve().relative_to(root)
    except ValueError:
        return None
    return rel.as_posix() if rel.parts else ""


def _under(rel: str, folders: set[str]) -> bool:
    return any(f == "" or rel == f or rel.startswith(f + "/") for f in folders)


def _walk(root: Path, rules: _IgnoreRules, skip: set[str]) -> Iterator[str]:
    """Every file under ``root`` not excluded, skipping ``.git`` and ``skip`` and
    never following a symlink into a folder."""
    if "" in skip:
        return
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath).relative_to(root).as_posix()
        prefix = "" if base == "." else base + "/"
        dirnames[:] = [
            d
            for d in dirnames
            if d != ".git" and prefix + d not in skip and not rules.excludes_dir(prefix + d)
        ]
        for name in filenames:
            if not rules.excludes(prefix + name):
                yield prefix + name


def _ingest(src: Path, objects_dir: Path) -> str:
    """Hash ``src`` while copying it into the store in one read; return its sha256."""
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(prefix=".incoming-", dir=objects_dir)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
            while chunk := inp.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
        h = digest.hexdigest()
        obj = _object(objects_dir, h)
        if not obj.exists():
            obj.parent.mkdir(mode=PRIVATE_DIR, exist_ok=True)
            os.chmod(tmp, READ_ONLY_FILE)
            os.replace(tmp, obj)
        return h
    finally:
        tmp.unlink(missing_ok=True)


def _object(objects_dir: Path, digest: str) -> Path:
    return objects_dir / digest[:2] / digest


def _inside(dest: Path, rel: str) -> Path:
    parts = rel.split("/")
    if not rel or rel.startswith("/") or ".." in parts or "" in parts:
        raise ValueError(f"workspace path {rel!r} is not a plain relative path")
    return dest.joinpath(*parts)


def _link(obj: Path, target: Path) -> None:
    """Hardlink ``obj`` at ``target``; copy where a link cannot be made (another device)."""
    make_private_dir(target.parent)
    if target.is_symlink() or target.exists():
        target.unlink()
    try:
        os.link(obj, target)
    except OSError:
        shutil.copyfile(obj, target)
        os.chmod(target, READ_ONLY_FILE)


def _load_cache(path: Path) -> dict[str, str]:
    """Remembered hashes, keyed by device, inode, size, mtime and ctime."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}


def _save_cache(path: Path, cache: dict[str, str]) -> None:
    """Write the newest entries atomically; concurrent writers may lose entries, never
    corrupt the file."""
    newest = dict(list(cache.items())[-_HASH_CACHE_MAX:])
    fd, tmp_name = tempfile.mkstemp(prefix=".hash-cache-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(newest, out)
        os.replace(tmp_name, path)
    finally:
        Path(tmp_name).unlink(missing_ok=True)


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"
