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
from pathlib import Path
from typing import Any

from nblaunch.errors import SpecError
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
    job_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{job_dir.name}-", dir=job_dir.parent))
    try:
        bundle = JobDir(staging).bundle
        bundle.mkdir()
        (bundle / BUNDLE_SPEC).write_text(spec.to_json())
        (bundle / BUNDLE_NOTEBOOK).write_text(json.dumps(notebook, indent=1))
        manifest = store_workspace(workspace, objects, bundle / WORKSPACE)
        (bundle / BUNDLE_WORKSPACE_MANIFEST).write_text(json.dumps(manifest, indent=1))
        (bundle / BUNDLE_REQUIREMENTS).write_text(requirements())
        git = git_state(Path(spec.submit_dir))
        (bundle / BUNDLE_GIT).write_text(json.dumps(git, indent=2))
        os.replace(staging, job_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return JobDir(job_dir).bundle
