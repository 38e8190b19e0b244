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


_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64}


class _SafetensorsReader:
    """Reads tensors of a .safetensors file with plain file reads, one at a time.

    safetensors' own loader maps the whole file; the mapped pages it touches count in the
    process's resident memory for as long as any loaded tensor keeps the mapping alive, so a
    model loaded that way is resident twice over (the file pages and any copies). Reading into
    fresh tensors keeps exactly one copy of each weight.
    """

    def __init__(self, path: Path) -> None:
        self.file = open(path, "rb")  # noqa: SIM115 (closed by close())
        n = int.from_bytes(self.file.read(8), "little")
        header = json.loads(self.file.read(n))
        header.pop("__metadata__", None)
        self.base = 8 + n
        self.entries = header

    def names(self) -> list[str]:
        return list(self.entries)

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self.entries[key]["shape"])

    def read(self, key: str, rows: tuple[int, int] | None = None) -> torch.Tensor:
        e = self.entries[key]
        dtype = _DTYPES[e["dtype"]]
        shape = list(e["shape"])
        start, end = e["data_offsets"]
        if rows is not None:  # a block of rows of a 2-D tensor
            row_bytes = (end - start) // shape[0]
            start, shape[0] = start + rows[0] * row_bytes, rows[1] - rows[0]
            end = start + row_bytes * shape[0]
        out = torch.empty(shape, dtype=dtype)
        self.file.seek(self.base + start)
        view = memoryview(out.reshape(-1).view(torch.uint8).numpy()) if out.numel() else memoryview(bytearray())
        if self.file.readinto(view) != end - start:
            raise CheckpointError(f"{self.file.name} is truncated: tensor {key} is cut short")
        return out

    def close(self) -> None:
        self.file.close()


def load_gpt2_hf(folder: str | Path, dtype: torch.dtype = torch.float32, decode_layout: bool = False) -> GPT:
    """Build a genforge GPT from a Hugging Face GPT-2 folder (config.json + model.safetensors).

    ``decode_layout=True`` reads the tied embedding straight into the (dim, vocab) layout of
    ``prepare_for_inference`` in row chunks, so the largest matrix never exists twice in memory
    (peak RSS of a GPT-2 124M decode: weights + ~20%, not weights + 2 x 154 MB).
    """
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
    wte_t: torch.Tensor | None = None  # the tied embedding, already (dim, vocab), with decode_layout
    try:
        f = _SafetensorsReader(folder / "model.safetensors")
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{folder / 'model.safetensors'} could not be read: {e}") from None
    try:
        for key in f.names():
            name = key if key.startswith(("transformer.", "lm_head.")) else "transformer." + key
            if name.endswith(_IGNORED):
                continue
            if decode_layout and cfg.tie_weights and name == "transformer.wte.weight":
                if f.shape(key) != (cfg.vocab_size, cfg.n_embd):
                    raise CheckpointError(f"{folder}: {name} has shape {f.shape(key)}, expected "
                                          f"{(cfg.vocab_size, cfg.n_embd)}")
                wte_t = torch.empty(cfg.n_embd, cfg.vocab_size, dtype=dtype)
                for i in range(0, cfg.vocab_size, 4096):
                    j = min(i + 4096, cfg.vocab_size)
                    wte_t[:, i:j] = f.read(key, (i, j)).to(dtype).t()
                continue
            t = f.read(key).to(dtype)
            # Conv1D stores (in, out): keep the transposed *view*, no copy. The decode layout
            # (prepare_for_inference) wants (in, out) contiguous, so it then copies nothing either.
            loaded[name] = t.t() if name.endswith(_CONV1D) else t
    except (KeyError, ValueError, OSError) as e:
        raise CheckpointError(f"{folder / 'model.safetensors'} could not be read: {e}") from None
    finally:
        f.close()
    if wte_t is not None:
        expected.pop("transformer.wte.weight")
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
    if wte_t is not None:
        from .inference import TransposedEmbedding, TransposedLinear

        model.lm_head = TransposedLinear(wte_t, None)
        model.transformer.wte = TransposedEmbedding(model.lm_head.weight_t)
    elif cfg.tie_weights:
        model.lm_head.weight = model.transformer.wte.weight
    return model.eval()
