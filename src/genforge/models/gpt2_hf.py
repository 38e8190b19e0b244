"""Load GPT-2 weights saved in Hugging Face's layout from a local folder.

The folder holds ``config.json`` and ``model.safetensors`` as ``save_pretrained`` writes them.
Nothing is downloaded. Hugging Face's GPT-2 uses ``Conv1D`` modules whose weights are stored
(in, out); ours are nn.Linear (out, in), so those four matrices are transposed on load.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import CheckpointError, ConfigError
from ..store import is_hf_gpt2_dir
from .transformer import GPT, GPTConfig

_CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
_IGNORED = (".attn.bias", ".attn.masked_bias")  # causal-mask buffers in older checkpoints


def gpt2_config_from_hf(hf: dict) -> GPTConfig:
    if hf.get("model_type") not in (None, "gpt2"):
        raise CheckpointError(f"config.json has model_type={hf.get('model_type')!r}; only 'gpt2' loads")
    act = hf.get("activation_function", "gelu_new")
    activations = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu"}
    if act not in activations:
        raise CheckpointError(f"config.json activation_function={act!r} is not supported: allowed "
                              f"{', '.join(activations)}")
    return GPTConfig(
        vocab_size=hf["vocab_size"], block_size=hf["n_positions"], n_layer=hf["n_layer"],
        n_head=hf["n_head"], n_embd=hf["n_embd"], dropout=0.0, bias=True,
        tie_weights=hf.get("tie_word_embeddings", True), layer_norm_eps=hf.get("layer_norm_epsilon", 1e-5),
        activation=activations[act],
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


LAYOUTS = (None, "fp32", "int8")


def load_gpt2_hf(folder: str | Path, dtype: torch.dtype = torch.float32, layout: str | None = None) -> GPT:
    """Build a genforge GPT from a Hugging Face GPT-2 folder (config.json + model.safetensors).

    ``layout`` picks the form the weights take as they are read, so no larger form ever exists:

    * ``None``: nn.Linear modules with the tied embedding, the training layout.
    * ``"fp32"``: the decode layout of ``prepare_for_inference``; the tied embedding is read in
      row chunks straight into (dim, vocab), so the largest matrix never exists twice in memory
      (peak RSS of a GPT-2 124M decode: weights + ~20%, not weights + 2 x 154 MB).
    * ``"int8"``: each matrix is quantized as soon as it is read (the embedding in row chunks), so
      the fp32 model never exists: peak memory is the int8 model plus one fp32 matrix of a layer.
      The result equals ``prepare_for_inference(load_gpt2_hf(folder), "int8")``.
    """
    if layout not in LAYOUTS:
        raise ConfigError(f"layout={layout!r} is unknown: allowed none, 'fp32' or 'int8'")
    if layout == "int8" and dtype != torch.float32:
        raise ConfigError(f"layout='int8' computes in fp32 around its int8 weights; dtype={dtype} is not allowed")
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
    expected = {name: t.shape for name, t in model.state_dict().items()}
    if cfg.tie_weights:
        expected.pop("lm_head.weight")
    try:
        f = _SafetensorsReader(folder / "model.safetensors")
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{folder / 'model.safetensors'} could not be read: {e}") from None
    try:
        keys = {}  # our parameter name -> the file's key
        for key in f.names():
            name = key if key.startswith(("transformer.", "lm_head.")) else "transformer." + key
            if not name.endswith(_IGNORED) and not (cfg.tie_weights and name == "lm_head.weight"):
                keys[name] = key
        missing, unexpected = sorted(set(expected) - set(keys)), sorted(set(keys) - set(expected))
        if missing or unexpected:
            raise CheckpointError(f"{folder} does not match GPT-2: missing {missing[:3]}, unexpected {unexpected[:3]}")
        for name, key in keys.items():
            shape = f.shape(key)
            if name.endswith(_CONV1D):
                shape = shape[::-1]
            if shape != tuple(expected[name]):
                raise CheckpointError(f"{folder}: {name} has shape {shape}, expected {tuple(expected[name])}")
        if layout is None:
            _read_dense(model, f, keys, dtype)
        else:
            _read_decode(model, f, keys, dtype, layout)
    except (KeyError, ValueError, OSError) as e:
        raise CheckpointError(f"{folder / 'model.safetensors'} could not be read: {e}") from None
    finally:
        f.close()
    return model.eval()


def _read(f: _SafetensorsReader, keys: dict[str, str], name: str, dtype: torch.dtype) -> torch.Tensor:
    t = f.read(keys[name]).to(dtype)
    # Conv1D stores (in, out): keep the transposed *view*, no copy
    return t.t() if name.endswith(_CONV1D) else t


def _read_dense(model: GPT, f: _SafetensorsReader, keys: dict[str, str], dtype: torch.dtype) -> None:
    model.load_state_dict({name: _read(f, keys, name, dtype) for name in keys}, strict=False, assign=True)
    if model.config.tie_weights:
        model.lm_head.weight = model.transformer.wte.weight


def _linear_names(model: GPT) -> list[str]:
    return [f"{name}.weight" for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)]


def _read_decode(model: GPT, f: _SafetensorsReader, keys: dict[str, str], dtype: torch.dtype, layout: str) -> None:
    """Small tensors load as they are; each Linear's matrix goes straight into its decode module."""
    from .inference import (
        Int8Embedding,
        Int8Linear,
        TransposedEmbedding,
        TransposedLinear,
        quantize_rows,
        release_freed_memory,
    )

    cfg = model.config
    linears = [n for n in _linear_names(model) if n in keys]  # the tied lm_head reads the embedding
    big = set(linears) | ({"transformer.wte.weight"} if cfg.tie_weights else set())
    model.load_state_dict({n: _read(f, keys, n, dtype) for n in keys if n not in big}, strict=False, assign=True)
    for name in linears:
        parent, _, attr = name[: -len(".weight")].rpartition(".")
        owner = model.get_submodule(parent)  # "" (the model itself) for an untied lm_head
        bias = getattr(owner, attr).bias
        w = _read(f, keys, name, dtype)  # (out, in), a view of the file's (in, out) for Conv1D
        if layout == "int8":
            module = Int8Linear(None, bias, quantize_rows(w))
        else:
            module = TransposedLinear(w.t().contiguous(), bias)  # no copy for Conv1D's (in, out)
        del w
        setattr(owner, attr, module)
        release_freed_memory()  # the fp32 matrix and its temporaries: don't let them pile up as heap holes
    if cfg.tie_weights:  # the embedding, read in row chunks into its one decode-layout copy
        key, rows = keys["transformer.wte.weight"], cfg.vocab_size
        if layout == "int8":
            qweight = quantize_rows(lambda i, j: f.read(key, (i, j)), rows)
            model.transformer.wte = Int8Embedding(None, qweight)
            model.lm_head = Int8Linear(None, None, qweight)
            del qweight
            release_freed_memory()
        else:
            wte_t = torch.empty(cfg.n_embd, rows, dtype=dtype)
            for i in range(0, rows, 4096):
                j = min(i + 4096, rows)
                wte_t[:, i:j] = f.read(key, (i, j)).to(dtype).t()
            model.lm_head = TransposedLinear(wte_t, None)
            model.transformer.wte = TransposedEmbedding(model.lm_head.weight_t)
