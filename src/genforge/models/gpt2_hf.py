"""Load GPT-2 weights saved in Hugging Face's layout from a local folder.

The folder holds ``config.json`` and ``model.safetensors`` as ``save_pretrained`` writes them.
Nothing is downloaded. Hugging Face's GPT-2 uses ``Conv1D`` modules whose weights are stored
(in, out); ours are nn.Linear (out, in), so those four matrices are transposed on load.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import CheckpointError
from .transformer import GPT, GPTConfig

_CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
_IGNORED = (".attn.bias", ".attn.masked_bias")  # causal-mask buffers in older checkpoints


def is_hf_gpt2_dir(path: Path) -> bool:
    return (path / "config.json").is_file() and (path / "model.safetensors").is_file()


def gpt2_config_from_hf(hf: dict) -> GPTConfig:
    if hf.get("model_type") not in (None, "gpt2"):
        raise CheckpointError(f"config.json has model_type={hf.get('model_type')!r}; only 'gpt2' loads")
    act = hf.get("activation_function", "gelu_new")
    if act not in ("gelu_new", "gelu_pytorch_tanh"):
        raise CheckpointError(f"config.json activation_function={act!r}; genforge's GPT-2 uses tanh GELU")
    return GPTConfig(
        vocab_size=hf["vocab_size"], block_size=hf["n_positions"], n_layer=hf["n_layer"],
        n_head=hf["n_head"], n_embd=hf["n_embd"], dropout=0.0, bias=True,
        tie_weights=hf.get("tie_word_embeddings", True), layer_norm_eps=hf.get("layer_norm_epsilon", 1e-5),
    )


def load_gpt2_hf(folder: str | Path, dtype: torch.dtype = torch.float32) -> GPT:
    """Build a genforge GPT from a Hugging Face GPT-2 folder (config.json + model.safetensors)."""
    from safetensors import safe_open

    folder = Path(folder)
    if not is_hf_gpt2_dir(folder):
        raise CheckpointError(f"{folder} is not a GPT-2 folder: it needs config.json and model.safetensors")
    try:
        hf = json.loads((folder / "config.json").read_text())
        cfg = gpt2_config_from_hf(hf)
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise CheckpointError(f"{folder / 'config.json'} is not a valid GPT-2 config: {e}") from None
    with torch.device("meta"):
        model = GPT(cfg, init=False)
    expected = model.state_dict()
    loaded: dict[str, torch.Tensor] = {}
    try:
        with safe_open(str(folder / "model.safetensors"), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 (safe_open has no __iter__)
                name = key if key.startswith(("transformer.", "lm_head.")) else "transformer." + key
                if name.endswith(_IGNORED):
                    continue
                t = f.get_tensor(key)
                if name.endswith(_CONV1D):
                    t = t.t()
                loaded[name] = t.to(dtype).contiguous()
    except Exception as e:  # safetensors raises its own error types for bad headers
        raise CheckpointError(f"{folder / 'model.safetensors'} could not be read: {e}") from None
    if cfg.tie_weights:
        loaded.pop("lm_head.weight", None)
        expected.pop("lm_head.weight", None)
    missing = sorted(set(expected) - set(loaded))
    unexpected = sorted(set(loaded) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{folder} does not match GPT-2: missing {missing[:3]}, unexpected {unexpected[:3]}")
    for name, t in loaded.items():
        if t.shape != expected[name].shape:
            raise CheckpointError(
                f"{folder}: {name} has shape {tuple(t.shape)}, expected {tuple(expected[name].shape)}")
    model.load_state_dict(loaded, strict=False, assign=True)
    if cfg.tie_weights:
        model.lm_head.weight = model.transformer.wte.weight
    return model.eval()
