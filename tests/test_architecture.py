"""The package's shape: no import cycles, in-job code stays below the rest, faces go
through the API, and mypy and ruff find nothing."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "nblaunch"
#: the in-job side: runs where only the job's own requirements are installed
IN_JOB = ("nblaunch.runtime", "nblaunch.trainers")
#: what the in-job side may not import
ABOVE_JOB = (
    "nblaunch.api",
    "nblaunch.cli",
    "nblaunch.extension",
    "nblaunch.widgets",
    "nblaunch.queue",
    "nblaunch.agent",
    "nblaunch.runners",
    "nblaunch.jobs",
    "nblaunch.snapshots",
)
FACES = ("nblaunch.cli", "nblaunch.extension", "nblaunch.widgets")
#: what a face may not import: it renders snapshots and asks the API for changes
BEHIND_THE_API = ("nblaunch.queue.store", "nblaunch.queue.views")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(tree: ast.AST, module: str, is_package: bool) -> Iterator[str]:
    """Every nblaunch module ``module`` imports, anywhere in the file (function
    bodies and ``TYPE_CHECKING`` blocks included)."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                yield f"{base}.{alias.name}"  # a submodule, or a name in ``base``
                yield base


@cache
def graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        found = _imported(tree, name, path.name == "__init__.py")
        edges[name] = {m for m in found if m in modules and m != name}
    return edges


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def _under(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_the_graph_sees_real_imports() -> None:
    edges = graph()
    assert "nblaunch.runtime.contract" in edges["nblaunch.runtime.execute"]
    assert "nblaunch.api" in edges["nblaunch.widgets.card"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_cycles_between_modules() -> None:
    # A package's __init__ re-exporting its own modules is not a cycle between modules.
    edges = {
        name: {m for m in deps if not name.startswith(m + ".")} for name, deps in graph().items()
    }
    assert _cycle(edges) is None


def test_no_import_cycles_between_packages() -> None:
    def package(module: str) -> str:
        parts = module.split(".")
        return ".".join(parts[:2])

    edges: dict[str, set[str]] = {}
    for name, deps in graph().items():
        edges.setdefault(package(name), set()).update(
            package(d) for d in deps if package(d) != package(name) and package(d) != "nblaunch"
        )
    assert _cycle(edges) is None


def _imports(importers: tuple[str, ...], imported: tuple[str, ...]) -> set[tuple[str, str]]:
    return {
        (name, dep)
        for name, deps in graph().items()
        if _under(name, importers)
        for dep in deps
        if _under(dep, imported)
    }


def test_in_job_code_imports_nothing_above_it() -> None:
    assert _imports(IN_JOB, ABOVE_JOB) == set()


def test_faces_render_snapshots_and_never_open_the_store() -> None:
    assert _imports(FACES, BEHIND_THE_API) == set()
    for path in PACKAGE.rglob("*.py"):
        if _under(_module_name(path), FACES):
            assert "store(" not in path.read_text(), f"{path} reaches into the store"


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed; pip install -e '.[dev]'")
    return found


def test_mypy_finds_nothing() -> None:
    done = subprocess.run(
        [_tool("mypy"), "nblaunch"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff_finds_nothing() -> None:
    for args in (["check"], ["format", "--check"]):
        done = subprocess.run(
            [_tool("ruff"), *args, "nblaunch", "tests", "benchmarks"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
