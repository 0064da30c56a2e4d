"""What a job is: the immutable request a face builds and the bundle records."""

from __future__ import annotations

import getpass
import json
import socket
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from nblaunch.errors import SpecError
from nblaunch.jobs.params import name_problem
from nblaunch.options import ZERO_STAGES, Strategy
from nblaunch.retry import retry_overrides
from nblaunch.runtime.contract import BUNDLE_SPEC


class JobSpec(BaseModel):
    """Everything needed to run a job anywhere; written to ``job.json``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=200)
    queue: str = "local"
    priority: int = 0
    gpus: int = Field(default=0, ge=0)
    nodes: int = Field(default=1, ge=1)
    strategy: Strategy = "none"
    params: dict[str, Any] = Field(default_factory=dict)
    notebook: str = Field(description="path of the notebook the job was built from")
    submit_dir: str = Field(description="working folder of the submitter, for relative data paths")
    retry: dict[str, Any] = Field(
        default_factory=dict, description="retry-policy keys overriding the queue's"
    )
    timeout_s: float | None = Field(
        default=None, gt=0, description="an attempt running longer fails (default: the queue's)"
    )
    sweep_id: str | None = None
    submitter: str = Field(default_factory=lambda: f"{getpass.getuser()}@{socket.gethostname()}")
    python: str = Field(default_factory=lambda: sys.version.split()[0])
    created_at: float = Field(default_factory=time.time)
    options: dict[str, Any] = Field(default_factory=dict)
    workspace_limit_mb: float | None = Field(default=None, gt=0)

    @field_validator("params", mode="before")
    @classmethod
    def _json_params(cls, params: Any) -> Any:
        if not isinstance(params, dict):
            return params  # pydantic says what is wrong with it
        for key, value in params.items():
            problem = name_problem(key)
            if problem is not None:
                raise ValueError(problem)
            try:
                json.dumps(value)
            except (TypeError, ValueError):
                raise ValueError(
                    f"parameter {key!r} = {value!r} is not JSON-serializable; pass numbers, "
                    "strings, booleans, None, lists or dicts"
                ) from None
        return params

    @field_validator("retry")
    @classmethod
    def _retry(cls, retry: dict[str, Any]) -> dict[str, Any]:
        try:
            return retry_overrides(retry)
        except SpecError as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _deepspeed_options(self) -> JobSpec:
        zero, offload = self.options.get("zero"), self.options.get("offload")
        if self.strategy != "deepspeed" and (zero is not None or offload):
            raise ValueError("--zero and --offload apply to DeepSpeed; add --strategy deepspeed")
        if zero is not None and zero not in ZERO_STAGES:
            raise ValueError(f"--zero {zero} is not a ZeRO stage; use 0, 1, 2 or 3")
        return self

    @classmethod
    def build(cls, **fields: Any) -> JobSpec:
        """Validate ``fields`` into a spec; any problem is one ``SpecError`` line."""
        try:
            return cls(**fields)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            msg = str(err["msg"]).removeprefix("Value error, ")
            raise SpecError(f"{where}: {msg}" if where else msg) from None

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    @classmethod
    def read(cls, bundle: Path) -> JobSpec:
        return cls.model_validate_json((bundle / BUNDLE_SPEC).read_text())
