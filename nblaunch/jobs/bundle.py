"""The bundle: a self-contained, immutable folder that travels to any backend.

::

    job.json            the JobSpec
    notebook.ipynb      papermill-ready; a cell tagged ``parameters`` holds defaults
    requirements.txt    installed distributions of the submitting environment
    git.json            remote, branch, commit, dirty diff
    workspace/          the notebook's folder (files hardlinked from the object store)
    workspace.json      what the workspace holds: path → sha256 and size

A bundle appears whole or not at all: it is written to a temporary sibling
folder and renamed into place.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

from nblaunch.errors import SpecError
from nblaunch.home import PRIVATE_DIR, PRIVATE_FILE, make_private_dir
from nblaunch.jobs.environment import git_state, requirements
from nblaunch.jobs.spec import JobSpec
from nblaunch.jobs.workspace import WorkspaceFile, store_workspace
from nblaunch.runtime.contract import (
    BUNDLE_GIT,
    BUNDLE_NOTEBOOK,
    BUNDLE_REQUIREMENTS,
    BUNDLE_SPEC,
    BUNDLE_WORKSPACE_MANIFEST,
    WORKSPACE,
    JobDir,
)


def read_notebook(path: Path) -> dict[str, Any]:
    """Load a notebook file, or raise one line saying why it is not one."""
    if not path.exists():
        raise SpecError(f"notebook {path} does not exist; check the path")
    if path.is_dir():
        raise SpecError(f"{path} is a folder, not a notebook; pass an .ipynb file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise SpecError(f"{path} is not a notebook (not JSON); pass an .ipynb file") from None
    check_notebook(data, str(path))
    return data


def check_notebook(data: Any, label: str) -> None:
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise SpecError(f"{label} is not a notebook (no cell list); pass an .ipynb file")
    if data.get("nbformat") != 4:
        raise SpecError(
            f"{label} is nbformat {data.get('nbformat')!r}; only nbformat 4 is supported "
            "(open and save it in JupyterLab to upgrade)"
        )


def check_kernel(data: dict[str, Any], label: str, *, here: bool, parameters: bool) -> None:
    """Refuse, before anything is written, a notebook papermill would refuse to run.

    papermill (``papermill.utils.nb_kernel_name``) runs the kernel named by
    ``metadata.kernelspec.name`` and nothing else (``language_info`` is no
    fallback); with parameters it also needs the language
    (``nb_language``: ``language_info.name``, else ``kernelspec.language``).
    ``here``: the job runs on this machine, so the kernel must be installed here.
    """
    metadata = data.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    spec = metadata.get("kernelspec")
    spec = spec if isinstance(spec, dict) else {}
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise SpecError(
            f"{label} names no kernel (metadata.kernelspec.name), so papermill cannot run it; "
            "open it in Jupyter, pick a kernel and save it (`jupyter kernelspec list` shows them)"
        )
    if here and not _kernel_installed(name):
        raise SpecError(
            f"{label} asks for kernel {name!r}, which is not installed here (installed: "
            f"{', '.join(sorted(_kernel_names()))}); pick one of those as the notebook's kernel "
            "and save it, or install it (`jupyter kernelspec list` shows them)"
        )
    info = metadata.get("language_info")
    language = (info if isinstance(info, dict) else {}).get("name") or spec.get("language")
    if parameters and not language:
        raise SpecError(
            f"{label} names no language (metadata.language_info.name or kernelspec.language), "
            "so papermill cannot write its parameters; run it once in Jupyter and save it"
        )


def _kernel_installed(name: str) -> bool:
    """Is ``name`` a kernel jupyter_client can start here (names match case-insensitively,
    as ``KernelSpecManager.get_kernel_spec`` matches them)?"""
    if name.lower() in _kernel_names():
        return True
    _kernel_names.cache_clear()  # installed since this process last looked?
    return name.lower() in _kernel_names()


@lru_cache(maxsize=1)
def _kernel_names() -> frozenset[str]:
    """The kernels installed here; looked up once per process (a miss looks again)."""
    from jupyter_client.kernelspec import KernelSpecManager

    return frozenset(KernelSpecManager().find_kernel_specs())


def write_bundle(
    job_dir: Path,
    spec: JobSpec,
    notebook: dict[str, Any],
    workspace: list[WorkspaceFile],
    objects: Path,
) -> Path:
    """Create ``job_dir`` holding the bundle for ``spec``; return the bundle folder.

    ``workspace`` (already size-checked) is stored in the object store
    ``objects`` and linked into the bundle.

    The job folder is staged under a hidden name and renamed into place, so a
    reader never sees a job folder without its complete bundle.
    """
    make_private_dir(job_dir.parent)
    staging = Path(tempfile.mkdtemp(prefix=f".{job_dir.name}-", dir=job_dir.parent))  # 0700
    try:
        bundle = JobDir(staging).bundle
        bundle.mkdir(mode=PRIVATE_DIR)
        _write(bundle / BUNDLE_SPEC, spec.to_json())
        _write(bundle / BUNDLE_NOTEBOOK, json.dumps(notebook, indent=1))
        manifest = store_workspace(workspace, objects, bundle / WORKSPACE)
        _write(bundle / BUNDLE_WORKSPACE_MANIFEST, json.dumps(manifest, indent=1))
        _write(bundle / BUNDLE_REQUIREMENTS, requirements())
        git = git_state(Path(spec.submit_dir))
        _write(bundle / BUNDLE_GIT, json.dumps(git, indent=2))
        os.replace(staging, job_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return JobDir(job_dir).bundle


def _write(path: Path, text: str) -> None:
    """A new bundle file, the user's alone (``PRIVATE_FILE``)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    with open(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
