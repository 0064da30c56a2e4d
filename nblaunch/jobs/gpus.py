"""The GPU catalog: peak dense bf16/fp16 tensor throughput, memory, and a default MFU.

Peaks are *dense* (no 2:4 structured sparsity): the datasheets print the
sparse figure first, and training never sees it. Memory is the datasheet's
nominal size; the estimates read it as 10^9 bytes although the cards hold
GiB, and the ~7% between the two is left to the CUDA context and the
allocator's fragmentation.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from nblaunch.errors import SpecError

__all__ = ["GPU", "CATALOG", "DEFAULT_MFU", "CPU_FAMILY", "lookup_gpu", "match_device_name"]

CPU_FAMILY = "cpu"


@dataclass(frozen=True)
class GPU:
    """One accelerator model.

    Attributes
    ----------
    name
        Canonical catalog name (``"A100-80GB"``).
    family
        Architecture; picks the default MFU.
    peak_tflops
        Peak dense bf16 (fp16 where the card has no bf16) tensor TFLOP/s.
    memory_gb
        Nominal memory in GB.
    """

    name: str
    family: str
    peak_tflops: float
    memory_gb: float


CATALOG: dict[str, GPU] = {
    g.name: g
    for g in (
        # NVIDIA T4 datasheet (2019): "Mixed Precision (FP16/FP32) 65 TFLOPS", 16 GB GDDR6.
        # Turing has no bf16; fp16 is what mixed-precision training uses there.
        GPU("T4", "turing", 65.0, 16.0),
        # NVIDIA L4 datasheet (2023): "FP16 Tensor Core 242 TFLOPS*" and "BF16 ... 242*",
        # *with sparsity -> 121 dense; 24 GB GDDR6.
        GPU("L4", "ada", 121.0, 24.0),
        # The A10G is AWS-only (G5) and has no NVIDIA datasheet; Baseten, "NVIDIA A10 vs
        # A10G for ML model inference" (2023) lists 70 TFLOPS dense fp16 tensor and
        # 24 GB GDDR6 (the A10's datasheet says 125 dense; the A10G trades tensor for
        # CUDA-core throughput).
        GPU("A10G", "ampere-ga10x", 70.0, 24.0),
        # NVIDIA V100 Tensor Core GPU datasheet (2020): "Tensor Performance 125 TFLOPS"
        # (SXM2; PCIe 112), 16 or 32 GB HBM2. Volta has no bf16.
        GPU("V100", "volta", 125.0, 16.0),
        GPU("V100-32GB", "volta", 125.0, 32.0),
        # NVIDIA A100 Tensor Core GPU datasheet (2021): "BFLOAT16 Tensor Core 312 TFLOPS |
        # 624 TFLOPS*" (*sparse), the same for PCIe and SXM; 40 GB HBM2 / 80 GB HBM2e.
        GPU("A100-40GB", "ampere", 312.0, 40.0),
        GPU("A100-80GB", "ampere", 312.0, 80.0),
        # NVIDIA H100 Tensor Core GPU datasheet (2023): "BF16 Tensor Core 1,979 teraFLOPS*"
        # (SXM) and "1,513*" (PCIe), *with sparsity -> 989 / 756 dense; 80 GB each.
        GPU("H100-SXM", "hopper", 989.0, 80.0),
        GPU("H100-PCIe", "hopper", 756.0, 80.0),
        # NVIDIA H200 Tensor Core GPU datasheet (2024): SXM "BF16 Tensor Core 1,979 TFLOPS*"
        # (sparse) -> 989 dense; 141 GB HBM3e.
        GPU("H200", "hopper", 989.0, 141.0),
        # NVIDIA HGX B200 specifications (2024), per GPU: "FP16/BF16 Tensor Core 4.5 PFLOPS"
        # (sparse) -> 2,250 dense; "GPU Memory 180 GB HBM3e".
        GPU("B200", "blackwell", 2250.0, 180.0),
    )
}

# Default model-FLOPs utilization (6·N·T over peak) when a queue has no
# finished jobs to calibrate from; each value says where it comes from.
DEFAULT_MFU: dict[str, tuple[float, str]] = {
    "volta": (
        0.30,
        "Megatron-LM (Shoeybi et al. 2019, arXiv:1909.08053): 39 TFLOP/s per V100, 30% of peak",
    ),
    "turing": (0.30, "assumed equal to V100's 30% (Megatron-LM); no published T4 training MFU"),
    "ampere": (
        0.40,
        "Narayanan et al. 2021 (arXiv:2104.04473) reach 52% on A100 with tuned Megatron; "
        "40% for stock HF/FSDP stacks",
    ),
    "ampere-ga10x": (0.30, "assumed equal to V100's 30%; no published A10G training MFU"),
    "ada": (0.30, "assumed equal to V100's 30%; no published L4 training MFU"),
    "hopper": (0.40, "Llama 3 (arXiv:2407.21783, Table 4): 38-43% BF16 MFU on H100"),
    "blackwell": (
        0.35,
        "assumed below Hopper's 40% (Llama 3) while kernels catch up; no published B200 MFU",
    ),
    CPU_FAMILY: (
        0.30,
        "assumed; CPU training runs near its matmul peak only for large layers "
        "(calibrate with one finished job)",
    ),
}

_ALIASES: dict[str, tuple[str, str | None]] = {
    # A bare "A100" / "H100" is what people type; the guess is said in the estimate's notes.
    "A100": ("A100-80GB", "A100 read as A100-80GB; say A100-40GB for the 40 GB card"),
    "H100": ("H100-SXM", "H100 read as H100-SXM; say H100-PCIe for the PCIe card"),
    "A10": ("A10G", "A10 read as A10G (the AWS variant in the catalog)"),
}


def _key(name: str) -> str:
    text = name.strip().upper().replace("NVIDIA", "").replace("TESLA", "")
    return re.sub(r"[\s_]+", "-", text.strip()).strip("-")


def lookup_gpu(name: str) -> tuple[GPU, str | None]:
    """The catalog entry for ``name`` and a note when an alias was guessed.

    Parameters
    ----------
    name
        A catalog name, case and ``_``/space insensitive (``a100-80gb``,
        ``H100 SXM``), or one of the aliases ``A100``, ``H100``, ``A10``.

    Raises
    ------
    SpecError
        The name is not in the catalog; the message lists the known names.
    """
    key = _key(name)
    for canonical, gpu in CATALOG.items():
        if _key(canonical) == key:
            return gpu, None
    if key in _ALIASES:
        canonical, note = _ALIASES[key]
        return CATALOG[canonical], note
    known = list(CATALOG)
    close = difflib.get_close_matches(key, [_key(k) for k in known], n=1, cutoff=0.6)
    hint = ""
    if close:
        hint = f" (did you mean {next(k for k in known if _key(k) == close[0])}?)"
    raise SpecError(
        f"unknown GPU {name!r}{hint}; use one of {', '.join(known)} (or CPU), "
        "or set gpu_type in the queue's [queues.NAME] table"
    )


def match_device_name(device_name: str) -> GPU | None:
    """The catalog entry an NVML device name describes, if any.

    NVML names look like ``NVIDIA A100-SXM4-80GB``, ``NVIDIA H100 80GB HBM3``,
    ``Tesla T4`` or ``NVIDIA H100 PCIe``.
    """
    key = _key(device_name)
    tokens = set(re.split(r"[-\s]+", key))
    if "H100" in tokens:
        return CATALOG["H100-PCIe" if "PCIE" in tokens else "H100-SXM"]
    if "A100" in tokens:
        return CATALOG["A100-40GB" if "40GB" in tokens else "A100-80GB"]
    if "V100" in tokens:
        return CATALOG["V100-32GB" if "32GB" in tokens else "V100"]
    for name in ("T4", "L4", "A10G", "H200", "B200"):
        if name in tokens:
            return CATALOG[name]
    return None
