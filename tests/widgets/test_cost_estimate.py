"""CostEstimate: controls in, estimate out, updating as the controls change."""

from __future__ import annotations

from pathlib import Path

from nblaunch.widgets.cost_estimate import CostEstimate


def test_shows_dollars_hours_and_memory_and_updates(nbl_home: Path) -> None:
    est = CostEstimate(params="124M", tokens="1B", gpu="A100-80GB", price_per_gpu_hour=2.0)
    assert est.queue.label == "(none)" and est.kwargs()["queue"] is None
    assert est.estimate is not None and est.estimate["cost_usd"] > 0
    assert 'class="nbl-dollars"' in est.result.value and "$" in est.result.value
    assert "fits" in est.result.value and "1× A100-80GB" in est.result.value
    one_gpu_hours = est.estimate["hours"]
    est.gpus.value = 8
    assert est.estimate["hours"] < one_gpu_hours and "8× A100-80GB" in est.result.value
    assert est.text().startswith("estimate: $")


def test_spot_without_a_spot_price_says_what_to_set_then_works(nbl_home: Path) -> None:
    est = CostEstimate(params="7B", tokens="10B", gpu="H100-SXM", price_per_gpu_hour=4.0)
    est.spot.value = "spot"
    assert est.estimate is None and "spot price" in est.result.value
    assert "nbl-estimate-error" in est.result.value
    est.spot_price.value = 1.5
    assert est.estimate is not None and est.estimate["spot_cost_usd"] is not None
    assert "spot</span>" in est.result.value


def test_memory_verdict_and_zero_control(nbl_home: Path) -> None:
    est = CostEstimate(params="70B", tokens="1B", gpu="A100-80GB", gpus=1)
    assert est.estimate is not None and not est.estimate["fits"]
    assert "does not fit" in est.result.value
    assert est.zero.layout.display == "none" and est.gpus.layout.display is None
    assert est.kwargs()["zero"] is None and est.zero.label == "auto"
    est.strategy.value = "deepspeed"
    assert est.zero.layout.display is None
    est.zero.value = 3
    assert est.kwargs()["strategy"] == "deepspeed" and est.kwargs()["zero"] == 3


def test_queue_price_is_used(nbl_home: Path) -> None:
    (nbl_home / "queues.toml").write_text(
        "[queues.a100]\n"
        'runner = "local"\ngpus = 8\ngpu_type = "A100-80GB"\nprice_per_gpu_hour = 3.0\n'
    )
    est = CostEstimate(params="1B", tokens="1B", queue="a100", gpus=8)
    assert est.queue.label == "a100" and ("(none)", "") in est.queue.options
    assert est.estimate is not None and est.estimate["price_per_gpu_hour"] == 3.0


def test_from_magic_options(nbl_home: Path) -> None:
    from nblaunch.jobs.estimate_args import parse_estimate_args

    options = parse_estimate_args(
        [
            "--params",
            "cfg",
            "--tokens",
            "2B",
            "--gpu",
            "H100-SXM",
            "--gpus",
            "4",
            "--price",
            "3",
            "--spot-price",
            "1.2",
            "--spot",
            "--restart-minutes",
            "5",
        ]
    )
    est = CostEstimate.from_options(options, {"cfg": "350M"})
    assert est.params.value == "350M" and est.gpus.value == 4 and est.spot.value == "spot"
    assert est.fixed["restart_s"] == 300 and est.estimate is not None
    assert est.estimate["spot_cost_usd"] is not None and "spot</span>" in est.result.value


def test_controls_start_at_estimates_defaults_and_the_rest_pass_through(nbl_home: Path) -> None:
    est = CostEstimate(params="1B", tokens="1B", gpu="T4", nodes=2, epochs=2.0)
    assert (est.gpus.value, est.nodes.value, est.strategy.value) == (1, 2, "ddp")
    assert est.zero.value == -1 and not est.offload.value and est.spot.value == "on-demand"
    assert est.fixed == {"epochs": 2.0}
    kw = est.kwargs()
    assert kw["epochs"] == 2.0 and kw["nodes"] == 2 and "price_per_gpu_hour" not in kw
