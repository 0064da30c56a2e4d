"""Third-party runners: distributions installed with pip register through the
``nblaunch.runners`` entry point, before queues.toml is validated.

``tests/plugins/subprocess_runner`` is a working runner package; adding it touched
only its own folder. ``tests/plugins/broken_runner`` fails to import, as a
plug-in with a missing dependency does.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import nblaunch
from nblaunch.runners import registry
from tests.conftest import make_notebook, run_cli, write_queues

PLUGINS = Path(__file__).resolve().parent.parent / "plugins"


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both plug-ins, installed by pip into a folder of their own."""
    site = tmp_path_factory.mktemp("plugin-site")
    # With setuptools at hand the build needs no download; without, pip fetches it.
    offline = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []
    for name in ("subprocess_runner", "broken_runner"):
        subprocess.run(
            [
                sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", *offline,
                "--target", str(site), str(PLUGINS / name),
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
    return site


@pytest.fixture
def plugins(plugin_site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The plug-ins on the path of this process and of every agent and CLI it starts."""
    paths = [str(plugin_site), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in paths if p))
    monkeypatch.syspath_prepend(str(plugin_site))
    registry._registry.cache_clear()
    yield plugin_site
    registry._registry.cache_clear()


def test_an_installed_runner_runs_a_job_to_succeeded(
    plugins: Path, nbl_home: Path, tmp_path: Path
) -> None:
    write_queues(
        nbl_home,
        f'[queues.plain]\nrunner = "subprocess"\npython = "{sys.executable}"\n'
        "price_per_gpu_hour = 1.0\n",
    )
    nb = make_notebook(tmp_path / "nb.ipynb", "import sys\nprint('ran by', sys.executable)")
    job = nblaunch.submit(nb, queue="plain")
    assert job.wait(timeout=120).value == "succeeded", job.logs()
    assert f"ran by {sys.executable}" in job.logs()
    assert job.snapshot().output_notebook is not None
    listed = run_cli("queues", "--json")
    assert listed.returncode == 0, listed.stderr
    assert '"runner": "subprocess"' in listed.stdout and '"python"' in listed.stdout


def test_a_plugin_option_is_validated_by_its_own_model(plugins: Path, nbl_home: Path) -> None:
    write_queues(nbl_home, '[queues.plain]\nrunner = "subprocess"\npyhton = "x"\n')
    done = run_cli("queues")
    assert done.returncode == 2
    assert "unknown key 'pyhton'" in done.stderr and "python" in done.stderr


def test_a_broken_plugin_takes_down_only_its_own_queue(
    plugins: Path, nbl_home: Path, tmp_path: Path
) -> None:
    write_queues(nbl_home, '[queues.local]\n[queues.bad]\nrunner = "broken"\n')
    nb = make_notebook(tmp_path / "nb.ipynb", "print('fine')")
    refused = run_cli("submit", str(nb), "--queue", "bad")
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert "runner 'broken' is unavailable" in refused.stderr
    assert "ModuleNotFoundError" in refused.stderr and "Traceback" not in refused.stderr
    assert not (nbl_home / "jobs").exists() or not any((nbl_home / "jobs").iterdir())
    # The agent still starts and serves every other queue.
    job = nblaunch.submit(nb)
    assert job.wait(timeout=120).value == "succeeded", job.logs()
    log = (nbl_home / "agent.log").read_text()
    assert "runner 'broken' skipped" in log and "queue bad is not served" in log
