"""The text pipeline: encode -> predict -> sample -> decode, behind ``genforge.load(...)``."""
from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError, ConfigError, GenforgeError
from ..types import Codec, Generation, SamplingParams


class TextModel:
    """A loaded text model: ``generate``/``stream``/``complete`` text, score it with ``perplexity``."""

    def __init__(self, model: torch.nn.Module, codec: Codec, meta: dict[str, Any], path: Path | None = None):
        self.model = model
        self.codec = codec
        self.meta = meta
        self.path = path

    @property
    def context_length(self) -> int:
        return int(self.model.max_len)

    def params(self, **kwargs: Any) -> SamplingParams:
        stop = kwargs.get("stop")
        if isinstance(stop, str):
            kwargs["stop"] = (stop,)
        elif isinstance(stop, list | tuple):
            kwargs["stop"] = tuple(stop)  # anything else is refused by SamplingParams, naming stop
        try:
            return SamplingParams(**kwargs)
        except TypeError as e:
            raise GenforgeError(f"unknown sampling parameter: {e}") from None

    def complete(self, prompt: str, **kwargs: Any) -> Generation:
        """Generate to the end and return text, token ids, finish reason and log-probability."""
        from ..sampling.decode import generate_text

        return generate_text(self.model, self.codec, prompt, self.params(**kwargs))

    def generate(self, prompt: str, **kwargs: Any) -> str:
        """The generated continuation of ``prompt`` (without the prompt)."""
        return self.complete(prompt, **kwargs).text

    def stream(self, prompt: str, **kwargs: Any) -> Iterator[str]:
        """Yield text pieces as tokens are sampled; stop strings never leak."""
        from ..sampling.decode import stream_text

        return stream_text(self.model, self.codec, prompt, self.params(**kwargs))

    @torch.no_grad()
    def perplexity(self, text: str, window: int | None = None) -> float:
        """exp(mean next-token cross-entropy) of ``text`` over non-overlapping context windows."""
        import torch.nn.functional as F

        ids = torch.tensor(self.codec.encode(text), dtype=torch.long)
        window = window or getattr(self.model.config, "block_size", 256)
        if ids.numel() < 2:
            raise GenforgeError("perplexity needs at least two tokens of text")
        total, count = 0.0, 0
        device = next(self.model.parameters()).device
        for start in range(0, ids.numel() - 1, window):
            chunk = ids[start:start + window + 1].to(device)
            if chunk.numel() < 2:
                break
            logits = self.model(chunk[None, :-1])
            total += F.cross_entropy(logits[0].float(), chunk[1:], reduction="sum").item()
            count += chunk.numel() - 1
        return math.exp(total / count)


def load(name_or_dir: str | Path, device: str = "cpu", quantize: str | None = None,
         dtype: str | None = None) -> TextModel:
    """Load a bundled model by name (``"shakespeare-char"``), a model/run folder, or a Hugging Face
    GPT-2 folder (config.json + model.safetensors; needs ``tokenizer.json`` beside it for text).

    ``quantize="int8"`` uses int8 weights on the CPU; ``dtype="bf16"``/"fp16" casts on GPUs.
    """
    from ..codecs import codec_from_dict
    from ..device import resolve_device
    from ..models import build_model
    from ..models.gpt2_hf import is_hf_gpt2_dir, load_gpt2_hf
    from ..models.inference import prepare_for_inference
    from ..train.checkpoint import load_tensors, load_weights, read_meta
    from .registry import resolve_model

    if dtype not in (None, "fp32", "bf16", "fp16"):
        raise ConfigError(f"dtype={dtype!r} is unknown: allowed None, 'fp32', 'bf16' or 'fp16'")
    device = str(resolve_device(device, field="device"))
    path = resolve_model(name_or_dir)
    if (path / "genforge.json").is_file():
        meta = read_meta(path)
        try:
            codec = codec_from_dict(meta["codec"])
            # built on the CPU, not the meta device: meta initialisers import torch._dynamo (~1 s)
            model = build_model(meta["model"]["kind"], {k: v for k, v in meta["model"].items() if k != "kind"},
                                init=False)
        except KeyError as e:
            raise CheckpointError(f"{path / 'genforge.json'} is missing field {e}") from None
        load_weights(model, load_tensors(path, "model.safetensors", meta), path)
    elif is_hf_gpt2_dir(path):
        from ..codecs.bpe import BPECodec

        tok = path / "tokenizer.json"
        if not tok.is_file():
            raise CheckpointError(f"{path} has GPT-2 weights but no tokenizer.json to encode text with")
        # on the CPU the weights are read straight into their decode form (int8 or transposed fp32)
        layout = (quantize or "fp32") if device == "cpu" else None
        model, codec = load_gpt2_hf(path, layout=layout), BPECodec.load(tok)
        meta = {"model": {"kind": "transformer"}, "source": "huggingface-gpt2"}
    else:
        raise CheckpointError(f"{path} is not a genforge model folder")
    model = model.float().to(device)
    if dtype in ("bf16", "fp16"):
        model = model.to(torch.bfloat16 if dtype == "bf16" else torch.float16)
    prepare_for_inference(model, quantize)
    return TextModel(model, codec, meta, path)
