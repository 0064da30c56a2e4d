"""Model size from counts, HF configs and model objects; tokens from counts and datasets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nblaunch.errors import SpecError
from nblaunch.jobs.estimate import estimate
from nblaunch.jobs.sizes import count_tokens, model_size, params_from_config_dict, parse_count

GPT2_SMALL = {
    "model_type": "gpt2",
    "n_layer": 12,
    "n_embd": 768,
    "n_head": 12,
    "vocab_size": 50257,
    "n_positions": 1024,
}
LLAMA_7B = {
    "model_type": "llama",
    "num_hidden_layers": 32,
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "vocab_size": 32000,
    "tie_word_embeddings": False,
}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("124M", 124e6),
        ("7B", 7e9),
        ("7b", 7e9),
        ("1.3e9", 1.3e9),
        ("1B", 1e9),
        ("350k", 350e3),
        ("2T", 2e12),
        ("1,000", 1000.0),
        ("1_000", 1000.0),
        (" 1.5 B ", 1.5e9),
        (12, 12.0),
        (3.5e9, 3.5e9),
    ],
)
def test_counts_as_people_write_them(text: object, value: float) -> None:
    assert parse_count(text, "params") == pytest.approx(value)


@pytest.mark.parametrize("bad", ["-5", "0", "abc", "7X", "", True, -1, float("inf")])
def test_bad_counts(bad: object) -> None:
    with pytest.raises(SpecError):
        parse_count(bad, "tokens")


def test_closed_form_counts_known_models() -> None:
    assert params_from_config_dict(GPT2_SMALL) == pytest.approx(124_439_808, rel=2e-3)
    assert params_from_config_dict(LLAMA_7B) == pytest.approx(6_738_415_616, rel=2e-3)
    with pytest.raises(SpecError, match="give the parameter count instead"):
        params_from_config_dict({"model_type": "mystery"})


def test_hf_config_folder_and_object(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(GPT2_SMALL))
    size = model_size(tmp_path)
    assert size.params == 124_439_808  # exact: built on the meta device
    assert (size.layers, size.hidden) == (12, 768)
    assert model_size(str(tmp_path)).params == size.params
    from transformers import GPT2Config

    assert model_size(GPT2Config(**GPT2_SMALL)).params == size.params
    with pytest.raises(SpecError, match="no config.json"):
        model_size(tmp_path / "missing")


def test_model_object_sums_its_parameters() -> None:
    import torch

    model = torch.nn.Sequential(torch.nn.Linear(10, 20), torch.nn.Linear(20, 5))
    size = model_size(model)
    assert size.params == 10 * 20 + 20 + 20 * 5 + 5
    assert size.source == "model Sequential"


def test_config_shape_feeds_the_activation_estimate(tmp_path: Path, nbl_home: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(GPT2_SMALL))
    est = estimate(params=tmp_path, tokens="1B", gpu="T4", batch_size=8, seq_len=1024)
    # 34 × 1024 × 8 × 768 × 12 layers
    assert est.activations_gb == pytest.approx(34 * 1024 * 8 * 768 * 12 / 1e9)


def test_tokens_from_a_dataset() -> None:
    assert count_tokens(list(range(1000)), seq_len=512) == 512_000
    assert count_tokens("1B", epochs=3) == 3e9
    with pytest.raises(SpecError, match="need seq_len"):
        count_tokens(list(range(10)))
    with pytest.raises(SpecError, match="empty"):
        count_tokens([], seq_len=8)
    with pytest.raises(SpecError, match="epochs"):
        count_tokens("1B", epochs=0)
