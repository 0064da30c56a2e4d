"""The README's promise: submit a notebook with a parameter, wait, read the output."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import make_notebook, run_cli


def test_submit_wait_json_injects_parameter(nbl_home: Path, tmp_path: Path) -> None:
    nb = make_notebook(tmp_path / "nb.ipynb", "print('x is', x)", params="x = 1")
    done = run_cli("submit", str(nb), "-p", "x", "3", "--wait", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["state"] == "succeeded"
    assert data["error"] is None
    for key in ("id", "name", "queue", "priority", "gpus", "attempt", "run_dir", "output_notebook"):
        assert key in data
    output = Path(data["output_notebook"]).read_text()
    assert "x = 3" in output
    assert "x is 3" in output
