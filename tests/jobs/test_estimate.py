"""Time, cost and spot figures against numbers worked out by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nblaunch.errors import SpecError, UnknownQueueError
from nblaunch.jobs.estimate import estimate
from nblaunch.jobs.gpus import CATALOG, lookup_gpu, match_device_name
from nblaunch.jobs.hardware import PROBE_FILE, cpu_peak_tflops
from tests.conftest import write_queues

HOUR = 3600.0


def test_124m_on_8_a100_by_hand(nbl_home: Path) -> None:
    # 6 × 124e6 params × 1e9 tokens              = 7.44e17 FLOPs
    # 8 GPUs × 312e12 FLOP/s × 0.40 (A100 default) = 9.984e14 FLOP/s
    # 7.44e17 / 9.984e14                          = 745.192 s = 0.206998 h
    # on demand: 0.206998 h × 8 GPUs × $2.00      = $3.31197
    # spot: 0.206998 h × 0.1/h = 0.0206998 preemptions, each 600 s + 1800 s / 2 = 1500 s
    #       0.206998 h + 0.0206998 × 1500 / 3600  = 0.215623 h; × 8 × $0.80 = $1.37999
    est = estimate(
        params="124M",
        tokens="1B",
        gpu="A100-80GB",
        gpus=8,
        price_per_gpu_hour=2.0,
        spot_price_per_gpu_hour=0.8,
        preemptions_per_hour=0.1,
    )
    assert est.flops == pytest.approx(7.44e17)
    assert est.peak_tflops == 312.0
    assert est.mfu == 0.40
    assert est.mfu_source.startswith("default for A100-80GB: Narayanan et al. 2021")
    assert est.hours == pytest.approx(745.192 / HOUR, rel=1e-5)
    assert est.cost_usd == pytest.approx(3.31197, rel=1e-5)
    assert est.preemptions_expected == pytest.approx(0.0206998, rel=1e-5)
    assert est.spot_hours == pytest.approx(0.215623, rel=1e-5)
    assert est.spot_cost_usd == pytest.approx(1.37999, rel=1e-5)
    assert est.fits and est.suggestion is None
    data = est.to_dict()
    json.dumps(data)
    for key in (
        "hours",
        "cost_usd",
        "spot_hours",
        "spot_cost_usd",
        "mfu",
        "mfu_source",
        "memory_per_gpu_gb",
        "fits",
        "suggestion",
        "flops",
        "gpu",
        "gpus",
        "nodes",
        "strategy",
        "zero",
        "peak_tflops",
        "price_per_gpu_hour",
        "spot_price_per_gpu_hour",
        "preemptions_expected",
    ):
        assert key in data


def test_given_mfu_multi_node_h100(nbl_home: Path) -> None:
    # 6 × 7e9 × 1e12 = 4.2e22 FLOPs over 8 nodes × 8 GPUs × 989e12 × 0.5 = 3.1648e16 FLOP/s
    # = 1,327,098 s = 368.638 h; × 64 GPUs × $3 = $70,778.5
    est = estimate(
        params=7e9,
        tokens="1T",
        gpu="H100-SXM",
        gpus=8,
        nodes=8,
        zero=3,
        mfu=0.5,
        price_per_gpu_hour=3.0,
    )
    assert est.mfu_source == "given"
    assert est.hours == pytest.approx(368.638, rel=1e-5)
    assert est.cost_usd == pytest.approx(70778.5, rel=1e-5)
    assert est.spot_hours is None and est.spot_cost_usd is None
    assert est.memory_per_gpu_gb == pytest.approx(7e9 * 16 / 64 / 1e9)


def test_queue_supplies_prices_and_gpu(nbl_home: Path) -> None:
    write_queues(
        nbl_home,
        """
[queues.a100]
gpus = 8
gpu_type = "A100-80GB"
price_per_gpu_hour = 2.0
spot_price_per_gpu_hour = 0.8
preemptions_per_hour = 0.1
""",
    )
    est = estimate(params="124M", tokens="1B", gpus=8, queue="a100")
    assert (est.gpu, est.queue, est.price_per_gpu_hour) == ("A100-80GB", "a100", 2.0)
    assert est.cost_usd == pytest.approx(3.31197, rel=1e-5)
    assert est.spot_cost_usd == pytest.approx(1.37999, rel=1e-5)
    assert est.mfu_source.startswith("default")  # no finished jobs yet
    spot = estimate(params="124M", tokens="1B", gpus=8, queue="a100", spot=True)
    assert spot.spot_hours == est.spot_hours


def test_spot_price_without_rate_assumes_no_preemption(nbl_home: Path) -> None:
    est = estimate(params="124M", tokens="1B", gpu="L4", spot_price_per_gpu_hour=0.3)
    assert est.spot_hours == est.hours and est.preemptions_expected == 0
    assert est.cost_usd is None
    assert any("no preemption rate" in n for n in est.notes)
    assert any("no price" in n and "--price" in n for n in est.notes)


def test_epochs_and_dataset_tokens(nbl_home: Path) -> None:
    by_count = estimate(params="124M", tokens=2_048_000, gpu="T4", epochs=2)
    by_dataset = estimate(params="124M", tokens=list(range(2000)), seq_len=1024, gpu="T4", epochs=2)
    assert by_count.tokens == by_dataset.tokens == 4_096_000
    assert by_count.hours == by_dataset.hours


def test_catalog_lookup_and_device_names() -> None:
    assert lookup_gpu("a100_80gb")[0] is CATALOG["A100-80GB"]
    gpu, note = lookup_gpu("A100")
    assert gpu.name == "A100-80GB" and note and "A100-40GB" in note
    assert lookup_gpu("h100 pcie")[0].peak_tflops == 756.0
    names = {
        "NVIDIA A100-SXM4-40GB": "A100-40GB",
        "NVIDIA A100 80GB PCIe": "A100-80GB",
        "NVIDIA H100 80GB HBM3": "H100-SXM",
        "NVIDIA H100 PCIe": "H100-PCIe",
        "NVIDIA H200": "H200",
        "Tesla T4": "T4",
        "NVIDIA L4": "L4",
        "NVIDIA A10G": "A10G",
        "Tesla V100-SXM2-32GB": "V100-32GB",
        "NVIDIA B200": "B200",
    }
    for device, name in names.items():
        found = match_device_name(device)
        assert found is not None and found.name == name, device
    assert match_device_name("NVIDIA GeForce GTX 1080") is None
    for name in (
        "T4",
        "L4",
        "A10G",
        "V100",
        "A100-40GB",
        "A100-80GB",
        "H100-SXM",
        "H100-PCIe",
        "H200",
        "B200",
    ):
        assert name in CATALOG


def test_cpu_queue_probes_its_peak_once(nbl_home: Path) -> None:
    write_queues(nbl_home, "[queues.local]\ngpus = 0\n")
    est = estimate(params="1M", tokens="10M", queue="local")
    assert (est.gpu, est.gpus) == ("CPU", 0)
    assert est.peak_tflops > 0
    cache = json.loads((nbl_home / PROBE_FILE).read_text())
    (entry,) = cache.values()
    assert entry["tflops"] == est.peak_tflops
    again = estimate(params="1M", tokens="10M", queue="local")
    assert again.peak_tflops == est.peak_tflops  # cached, not measured again
    assert cpu_peak_tflops(nbl_home, refresh=True) > 0


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"gpu": "A200"}, SpecError, ["unknown GPU 'A200'", "did you mean H200", "use one of"]),
        ({"gpu": "T4", "tokens": -5}, SpecError, ["tokens must be positive", "1B"]),
        ({"gpu": "T4", "tokens": "-1B"}, SpecError, ["tokens must be positive"]),
        ({"gpu": "T4", "tokens": "lots"}, SpecError, ["cannot read tokens 'lots'", "1B"]),
        ({"gpu": "T4", "params": "big"}, SpecError, ["cannot read params 'big'", "config.json"]),
        ({"gpu": "T4", "spot": True}, SpecError, ["no spot price", "--spot-price"]),
        ({"gpu": "T4", "gpus": -1}, SpecError, ["gpus", "greater than or equal to 0"]),
        ({"gpu": "T4", "zero": 4}, SpecError, ["zero"]),
        ({"gpu": "T4", "strategy": "magic"}, SpecError, ["strategy"]),
        ({"queue": "nope"}, UnknownQueueError, ["unknown queue 'nope'", "queues.toml"]),
        ({}, SpecError, ["--gpu", "--queue"]),
    ],
)
def test_bad_input_is_one_line_with_the_fix(
    nbl_home: Path, kwargs: dict[str, object], error: type[Exception], words: list[str]
) -> None:
    args: dict[str, object] = {"params": "124M", "tokens": "1B", **kwargs}
    with pytest.raises(error) as info:
        estimate(**args)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_spot_question_on_a_queue_without_spot_price(nbl_home: Path) -> None:
    write_queues(nbl_home, '[queues.a100]\ngpu_type = "A100-80GB"\nprice_per_gpu_hour = 2.0\n')
    with pytest.raises(SpecError, match=r"set spot_price_per_gpu_hour in \[queues.a100\]"):
        estimate(params="124M", tokens="1B", queue="a100", spot=True)
