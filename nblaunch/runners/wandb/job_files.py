"""A bundle as a W&B Launch job: ``wandb-job.json`` and ``requirements.frozen.txt``
beside the bundle's own files, laid out as the Launch agent sees its job's folder.

``wandb-job.json`` follows the schema ``wandb job create`` writes for an
artifact job (``wandb/sdk/internal/job_builder.py``), with nblaunch's runtime as
the entrypoint: Launch's own notebook jobs are converted to scripts with
nbconvert (``!`` lines dropped, no parameters), while this one runs the real
notebook under papermill with the parameters the W&B UI offers.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from nblaunch.errors import SpecError
from nblaunch.runtime.contract import (
    BUNDLE_NOTEBOOK,
    BUNDLE_REQUIREMENTS,
    BUNDLE_SPEC,
    PRIVATE_DIR,
    PRIVATE_FILE,
)

JOB_FILE = "wandb-job.json"
FROZEN_REQUIREMENTS = "requirements.frozen.txt"
#: run by the Launch agent in the job's folder (``nblaunch.runtime.wandb_launch``)
ENTRYPOINT = ["python", "-m", "nblaunch.runtime", "."]
#: what papermill's inference names, in W&B's type names (an unannotated default
#: that is not a literal has no type W&B can check)
_ANNOTATED = {"str": "string", "int": "number", "float": "number", "bool": "boolean"}


def wandb_type(value: Any) -> dict[str, Any]:
    """W&B's type of a JSON value, as ``wandb.sdk.data_types._dtypes.TypeRegistry``
    writes it into a job's ``input_types`` (the tests hold the two together)."""
    if value is None:
        return {"wb_type": "none"}
    if isinstance(value, bool):
        return {"wb_type": "boolean"}
    if isinstance(value, (int, float)):
        return {"wb_type": "number"}
    if isinstance(value, str):
        return {"wb_type": "string"}
    if isinstance(value, dict):
        return typed_dict({str(k): wandb_type(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        kinds: list[dict[str, Any]] = []
        for item in value:
            kind = wandb_type(item)
            if kind not in kinds:
                kinds.append(kind)
        if not kinds:
            element: dict[str, Any] = {"wb_type": "unknown"}
        elif len(kinds) == 1:
            element = kinds[0]
        elif len(kinds) == 2 and {"wb_type": "none"} in kinds:
            element = {"wb_type": "union", "params": {"allowed_types": kinds}}
        else:
            element = {"wb_type": "invalid"}
        return {"wb_type": "list", "params": {"element_type": element, "length": len(value)}}
    return {"wb_type": "any"}


def typed_dict(type_map: dict[str, Any]) -> dict[str, Any]:
    return {"wb_type": "typedDict", "params": {"type_map": type_map}}


def job_parameters(bundle: Path) -> dict[str, dict[str, Any]]:
    """Each parameter the job's notebook takes → its W&B type: the job's own value's
    type, else the ``parameters`` cell default's (read by papermill)."""
    import papermill

    spec = json.loads((bundle / BUNDLE_SPEC).read_text())
    declared = papermill.inspect_notebook(str(bundle / BUNDLE_NOTEBOOK))
    types: dict[str, dict[str, Any]] = {}
    for name, info in declared.items():
        try:
            types[name] = wandb_type(ast.literal_eval(info["default"]))
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            kind = _ANNOTATED.get(str(info.get("inferred_type_name")))
            types[name] = {"wb_type": kind or "any"}
    for name, value in spec["params"].items():
        types[name] = wandb_type(value)
    return types


def frozen_requirements(requirements: str) -> str:
    """The bundle's ``name==version`` pins, installable from an index: local version
    labels (``torch==2.13.0+cpu``) dropped, so a GPU machine picks its own build."""
    lines = []
    for line in requirements.splitlines():
        pin = re.sub(r"^([^=\s]+==[^+\s]+)\+\S+$", r"\1", line.strip())
        if pin:
            lines.append(pin)
    return "".join(f"{line}\n" for line in lines)


def job_description(bundle: Path, code_artifact_id: str | None) -> dict[str, Any]:
    """``wandb-job.json`` for the bundle. ``code_artifact_id`` is the id W&B gave
    the logged code artifact; an export made offline has none yet."""
    spec = json.loads((bundle / BUNDLE_SPEC).read_text())
    source: dict[str, Any] = {"entrypoint": list(ENTRYPOINT), "notebook": False}
    if code_artifact_id is not None:
        source["artifact"] = f"wandb-artifact://_id/{code_artifact_id}"
    return {
        "_version": "v0",
        "source_type": "artifact",
        "source": source,
        "input_types": typed_dict(job_parameters(bundle)),
        "output_types": typed_dict({}),
        # the kernel's Python, which the bundle's pins were read from
        "runtime": ".".join(str(spec["python"]).split(".")[:2]),
    }


def export_job(bundle: Path, dest: Path, code_artifact_id: str | None = None) -> Path:
    """Write the bundle as a W&B job folder at ``dest`` (whole or not at all).

    ``dest`` must not exist, or be an empty folder.
    """
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise SpecError(f"{dest} already exists and is not an empty folder; pick a new path")
    description = job_description(bundle, code_artifact_id)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        folder = staging / "job"
        # Copies, not the store's read-only links: the agent's job folder is writable.
        shutil.copytree(bundle, folder, copy_function=shutil.copyfile)
        _write(folder / JOB_FILE, json.dumps(description, indent=4))
        requirements = (bundle / BUNDLE_REQUIREMENTS).read_text()
        _write(folder / FROZEN_REQUIREMENTS, frozen_requirements(requirements))
        folder.chmod(PRIVATE_DIR)
        if dest.exists():
            dest.rmdir()
        os.replace(folder, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


def _write(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    with open(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
