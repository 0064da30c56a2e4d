"""The fake W&B backend (``fake_server.FakeWandb``) and wandb pointed at it."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.runners.wandb.fake_server import FakeWandb


@pytest.fixture
def fake_wandb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeWandb]:
    """A started fake W&B server, with wandb's settings and folders pointed at it
    (and into ``tmp_path``); afterwards wandb's service is shut down, then the server."""
    pytest.importorskip("wandb")
    server = FakeWandb().start()
    monkeypatch.setenv("WANDB_BASE_URL", server.url)
    monkeypatch.setenv("WANDB_API_KEY", server.api_key)
    monkeypatch.setenv("WANDB_ENTITY", "team")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    monkeypatch.delenv("WANDB_RUN_ID", raising=False)
    for name in ("DIR", "CONFIG_DIR", "CACHE_DIR", "DATA_DIR", "ARTIFACT_DIR"):
        folder = tmp_path / "wandb-home" / name.lower()
        folder.mkdir(parents=True)
        monkeypatch.setenv(f"WANDB_{name}", str(folder))
    try:
        yield server
    finally:
        import wandb

        if wandb.run is not None:
            wandb.run.finish()
        wandb.teardown()  # the next test's wandb-core reads its own settings
        server.stop()


@pytest.fixture
def python_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The entrypoint's ``python`` is this interpreter, as on a Launch agent's machine
    whose environment has nblaunch installed."""
    monkeypatch.setenv("PATH", f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}")


@pytest.fixture
def fake_server() -> Iterator[FakeWandb]:
    """A started fake W&B server, this process's environment left alone."""
    pytest.importorskip("wandb")
    server = FakeWandb().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def wandb_env(fake_server: FakeWandb, tmp_path: Path) -> dict[str, str]:
    """Variables that point a subprocess's wandb at ``fake_server`` (a login)."""
    env = {
        "WANDB_BASE_URL": fake_server.url,
        "WANDB_API_KEY": fake_server.api_key,
        "WANDB_SILENT": "true",
    }
    for name in ("DIR", "CONFIG_DIR", "CACHE_DIR", "DATA_DIR", "ARTIFACT_DIR"):
        folder = tmp_path / "wandb-login" / name.lower()
        folder.mkdir(parents=True)
        env[f"WANDB_{name}"] = str(folder)
    return env
