"""``nblaunch estimate`` in a subprocess: JSON, text, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nblaunch.jobs.estimate_args import estimate_from_options, parse_estimate_args
from tests.conftest import run_cli, write_queues


def test_estimate_json(nbl_home: Path) -> None:
    write_queues(
        nbl_home,
        """
[queues.a100]
gpu_type = "A100-80GB"
price_per_gpu_hour = 2.0
spot_price_per_gpu_hour = 0.8
preemptions_per_hour = 0.1
""",
    )
    done = run_cli(
        "estimate",
        "--params",
        "124M",
        "--tokens",
        "1B",
        "--gpus",
        "8",
        "--queue",
        "a100",
        "--spot",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["hours"] == pytest.approx(745.192 / 3600, rel=1e-5)
    assert data["cost_usd"] == pytest.approx(3.31197, rel=1e-5)
    assert data["spot_hours"] == pytest.approx(0.215623, rel=1e-5)
    assert data["spot_cost_usd"] == pytest.approx(1.37999, rel=1e-5)
    assert data["mfu"] == 0.4 and data["mfu_source"].startswith("default for A100-80GB")
    assert data["memory_per_gpu_gb"] == pytest.approx(1.984)
    assert data["fits"] is True and data["suggestion"] is None
    assert (data["gpu"], data["gpus"], data["nodes"], data["queue"]) == ("A100-80GB", 8, 1, "a100")


def test_estimate_text_with_verdict(nbl_home: Path) -> None:
    done = run_cli(
        "estimate",
        "--params",
        "7B",
        "--tokens",
        "1B",
        "--gpu",
        "A100-80GB",
        "--gpus",
        "1",
        "--strategy",
        "ddp",
        "--price",
        "2",
    )
    assert done.returncode == 0, done.stderr
    assert "7B params × 1B tokens = 4.20e+19 FLOPs on 1 × A100-80GB" in done.stdout
    assert "112.0 GB per GPU of 80 GB: does NOT fit" in done.stdout
    assert "use ZeRO-1 on 2 GPUs, or H200" in done.stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--tokens", "1B", "--gpu", "A200"], "unknown GPU 'A200' (did you mean H200?)"),
        (["--tokens", "-1B", "--gpu", "T4"], "tokens must be positive (got '-1B')"),
        (
            ["--tokens", "1B", "--gpu", "T4", "--spot"],
            "no spot price for a spot estimate; pass --spot-price USD",
        ),
        (["--tokens", "1B", "--gpu", "T4", "--zero", "5"], "argument --zero: invalid choice"),
        (["--gpu", "T4"], "the following arguments are required: --tokens"),
    ],
)
def test_bad_input_is_one_line_exit_2(nbl_home: Path, args: list[str], words: str) -> None:
    done = run_cli("estimate", "--params", "124M", *args)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nblaunch: error: ")
    assert words in lines[0]


def test_parsed_options_run_the_same_estimate_with_a_namespace(nbl_home: Path) -> None:
    import torch

    options = parse_estimate_args(["--params", "model", "--tokens", "1M", "--gpu", "T4"])
    model = torch.nn.Linear(100, 10)
    est = estimate_from_options(options, namespace={"model": model})
    assert est.params == 1010
    assert options["json"] is False
