"""How big a training run is: parameters of the model and tokens it sees.

Counts are written the way people say them (``124M``, ``7B``, ``1.3e9``,
``300B``); a model's size can also come from an HF config (a local folder
with ``config.json``, a config object or its dict) or from the model object.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nblaunch.errors import SpecError

__all__ = ["ModelSize", "count_tokens", "model_size", "params_from_config_dict", "parse_count"]

_SUFFIX = {"": 1.0, "K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12}
_COUNT = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+)(?:E[+-]?\d+)?)\s*([KMBGT]?)$")

# Architectures whose MLP is gated (three d×ff matrices instead of two).
_GATED = {
    "llama",
    "mistral",
    "mixtral",
    "qwen2",
    "qwen2_moe",
    "qwen3",
    "gemma",
    "gemma2",
    "gemma3",
    "phi3",
    "olmo",
    "olmo2",
    "deepseek_v2",
    "deepseek_v3",
}


@dataclass(frozen=True)
class ModelSize:
    """A parameter count and, when a config said so, the shape behind it."""

    params: float
    layers: int | None = None
    hidden: int | None = None
    source: str = "count"


def parse_count(value: Any, what: str) -> float:
    """A positive count from ``7B``, ``124M``, ``1.3e9``, ``350_000`` or a number.

    Raises
    ------
    SpecError
        The value is not a count, or is not positive.
    """
    if isinstance(value, bool):
        raise SpecError(f"{what} must be a count such as 124M or 1.3e9 (got {value!r})")
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        text = str(value).strip().upper().replace(",", "").replace("_", "")
        match = _COUNT.match(text)
        if match is None:
            raise SpecError(
                f"cannot read {what} {value!r}; give a count such as 124M, 7B, 1B or 1.3e9"
            )
        number = float(match.group(1)) * _SUFFIX[match.group(2)]
    if not math.isfinite(number) or number <= 0:
        raise SpecError(f"{what} must be positive (got {value!r}); give a count such as 1B or 3e9")
    return number


def count_tokens(tokens: Any, *, seq_len: int | None = None, epochs: float = 1.0) -> float:
    """Tokens a run trains on: a count, or a dataset's length × ``seq_len``; times ``epochs``.

    Parameters
    ----------
    tokens
        A count (``1B``, ``3e9``) or a sized dataset of fixed-length examples.
    seq_len
        Tokens per example; needed when ``tokens`` is a dataset.
    epochs
        Passes over the data.
    """
    if not isinstance(epochs, (int, float)) or isinstance(epochs, bool) or epochs <= 0:
        raise SpecError(f"epochs must be positive (got {epochs!r})")
    if isinstance(tokens, Sized) and not isinstance(tokens, (str, bytes)):
        if not seq_len or seq_len <= 0:
            raise SpecError(
                f"tokens from a dataset of {len(tokens)} examples need seq_len "
                "(tokens = examples × seq_len); pass seq_len or a token count such as 1B"
            )
        if len(tokens) == 0:
            raise SpecError(
                "tokens must be positive (the dataset is empty); pass a non-empty dataset"
            )
        return float(len(tokens)) * seq_len * epochs
    return parse_count(tokens, "tokens") * epochs


def model_size(params: Any) -> ModelSize:
    """Parameters of ``params``: a count, an HF config (folder, object, dict) or a model.

    A model counts ``sum(p.numel() for p in model.parameters())`` (tied
    weights once). A config is instantiated on PyTorch's ``meta`` device when
    transformers is installed (exact, allocates nothing), else counted in
    closed form by :func:`params_from_config_dict`.

    Raises
    ------
    SpecError
        ``params`` is none of those.
    """
    if isinstance(params, (int, float, bool)):
        return ModelSize(parse_count(params, "params"))
    if isinstance(params, (str, os.PathLike)):
        path = Path(params).expanduser()
        if isinstance(params, os.PathLike) or path.is_dir() or path.suffix == ".json":
            return _from_path(path, str(params))
        return ModelSize(_parse_params_text(str(params)))
    parameters = getattr(params, "parameters", None)
    if callable(parameters):
        config = getattr(params, "config", None)
        layers, hidden = _shape(_config_dict(config)) if config is not None else (None, None)
        count = float(sum(p.numel() for p in parameters()))
        if count <= 0:
            raise SpecError(
                "the model has no parameters; pass a built model or a count such as 124M"
            )
        return ModelSize(count, layers, hidden, f"model {type(params).__name__}")
    if isinstance(params, Mapping) or callable(getattr(params, "to_dict", None)):
        return _from_config(params, f"config {type(params).__name__}")
    raise SpecError(
        f"cannot read params from a {type(params).__name__}; give a count (124M, 7B), "
        "an HF model folder with config.json, a config, or a model"
    )


def _parse_params_text(text: str) -> float:
    try:
        return parse_count(text, "params")
    except SpecError as exc:
        if "positive" in str(exc):
            raise
        raise SpecError(
            f"cannot read params {text!r}; give a count (124M, 7B, 1.3e9) or an HF model "
            "folder with config.json"
        ) from None


def _from_path(path: Path, shown: str) -> ModelSize:
    file = path / "config.json" if path.is_dir() else path
    if not file.is_file():
        raise SpecError(
            f"no config.json at {shown}; give an HF model folder with config.json "
            "or a count such as 7B"
        )
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise SpecError(
            f"cannot read {file} ({exc}); fix the file or give a count such as 7B"
        ) from None
    if not isinstance(data, dict):
        raise SpecError(f"{file} is not an HF config (not a JSON object); give a count such as 7B")
    return _from_config(data, f"config {file}")


def _config_dict(config: Any) -> dict[str, Any]:
    if isinstance(config, Mapping):
        return dict(config)
    to_dict = getattr(config, "to_dict", None)
    return dict(to_dict()) if callable(to_dict) else {}


def _shape(cfg: Mapping[str, Any]) -> tuple[int | None, int | None]:
    layers = _first(cfg, "num_hidden_layers", "n_layer", "num_layers")
    hidden = _first(cfg, "hidden_size", "n_embd", "d_model")
    return (int(layers) if layers else None, int(hidden) if hidden else None)


def _first(cfg: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        if cfg.get(key) is not None:
            return cfg[key]
    return None


def _from_config(config: Any, source: str) -> ModelSize:
    cfg = _config_dict(config)
    layers, hidden = _shape(cfg)
    count = _instantiate_on_meta(config, cfg)
    if count is None:
        count = params_from_config_dict(cfg)
    return ModelSize(count, layers, hidden, source)


def _instantiate_on_meta(config: Any, cfg: dict[str, Any]) -> float | None:
    try:
        import torch
        from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, PretrainedConfig
    except ImportError:
        return None
    try:
        if not isinstance(config, PretrainedConfig):
            data = {k: v for k, v in cfg.items() if k != "model_type"}
            config = AutoConfig.for_model(cfg["model_type"], **data)
        with torch.device("meta"):
            for auto in (AutoModelForCausalLM, AutoModel):
                try:
                    model = auto.from_config(config)
                    break
                except ValueError:  # this auto class does not know the architecture
                    continue
            else:
                return None
    # An architecture transformers cannot build (custom code, a config from a newer
    # version) still has the closed-form count; the estimate is what matters here.
    except Exception:
        return None
    return float(sum(p.numel() for p in model.parameters()))


def params_from_config_dict(cfg: Mapping[str, Any]) -> float:
    """Closed-form parameter count of a decoder-style transformer config.

    Per layer: attention ``2·d² + 2·d·d_kv`` (grouped KV heads shrink
    ``d_kv``), MLP ``2·d·ff`` (``3·d·ff`` when gated, times the experts of an
    MoE); plus the token embedding ``V·d``, learned positions when the config
    has ``n_positions``, and an untied output head. Norms and biases are left
    out (under 0.2% for GPT-2 small).
    """
    layers, hidden = _shape(cfg)
    vocab = _first(cfg, "vocab_size")
    if not (layers and hidden and vocab):
        raise SpecError(
            "the config lacks num_hidden_layers / hidden_size / vocab_size; "
            "give the parameter count instead (e.g. 7B)"
        )
    d = float(hidden)
    ff = float(_first(cfg, "intermediate_size", "n_inner", "ffn_dim") or 4 * d)
    heads = _first(cfg, "num_attention_heads", "n_head")
    kv_heads = _first(cfg, "num_key_value_heads")
    d_kv = d * kv_heads / heads if heads and kv_heads else d
    gated = cfg.get("model_type") in _GATED
    experts = float(_first(cfg, "num_local_experts", "num_experts") or 1)
    per_layer = 2 * d * d + 2 * d * d_kv + (3 if gated else 2) * d * ff * experts
    embed = float(vocab) * d
    positions = float(cfg["n_positions"]) * d if cfg.get("n_positions") else 0.0
    head = 0.0 if cfg.get("tie_word_embeddings", True) else embed
    return layers * per_layer + embed + positions + head
