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

    modality = "text"  # what /v1/models reports and how `genforge generate` writes the output

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
        """Generate to the end and return text, token ids, finish reason and log-probability.

        Past the model's context the window slides (its most recent tokens are kept, see
        ``genforge.sampling.tokens``); ``sliding_window=False`` refuses such a request instead.
        """
        from ..sampling.text import eos_id, generate_text

        slide = bool(kwargs.pop("sliding_window", True))
        if kwargs.get("draft") is not None:
            return self.speculate(prompt, **kwargs)
        kwargs.pop("draft", None)
        return generate_text(self.model, self.codec, prompt, self.params(**kwargs), eos_id=eos_id(self.codec),
                             slide=slide)

    def speculate(self, prompt: str, draft: TextModel | str = "lookup", draft_k: int = 4, ngram: int = 3,
                  stats: Any = None, **kwargs: Any) -> Generation:
        """``complete`` by speculative decoding (``sampling.speculative``): ``draft`` is a smaller model in this
        model's codec (a ``TextModel``, or a name or folder to load) or ``"lookup"`` (prompt lookup with
        ``ngram``-token matches); ``draft_k`` tokens are drafted a round. Same distribution as ``complete``,
        the same tokens at temperature 0; within the context (no sliding). ``stats``: a ``SpecStats`` to fill."""
        from ..sampling.speculative import LookupDraft, ModelDraft, speculative_text
        from ..sampling.text import eos_id

        params = self.params(**kwargs)
        if params.best_of > 1 or params.num_beams > 1:
            raise GenforgeError("a draft model does not combine with best_of or beam search: use one or the other")
        if isinstance(draft, str) and draft == "lookup":
            proposer = LookupDraft(ngram)
        else:
            if isinstance(draft, str | Path):
                from . import load

                draft = load(draft, device=str(next(self.model.parameters()).device))
            if not isinstance(draft, TextModel) or draft.codec.to_dict() != self.codec.to_dict():
                name = getattr(draft, "path", None) or type(draft).__name__
                raise GenforgeError(f"the draft model {name} does not share the codec of {self.path}: a draft must be "
                                    "trained with the target's codec (train it with the same corpus and codec, or "
                                    "train.init_from the target's codec)")
            proposer = ModelDraft(draft.model)
        return speculative_text(self.model, self.codec, prompt, params, eos_id(self.codec), proposer, draft_k, stats)

    def answer(self, prompt: str, retrieve: Any, k: int = 4, filters: dict[str, str] | None = None,
               **kwargs: Any):
        """Generate with passages retrieved for ``prompt`` from the index ``retrieve`` (a name or an opened
        index) in front of it; returns a ``pipelines.retrieve.Answer`` with the text, the numbered
        citations and the grounding check of each sentence."""
        from .retrieve import Answer, context_budget, ground, retrieve_context

        self.params(**kwargs)  # bad parameters before any retrieval work
        asked = kwargs.get("max_tokens")
        budget = context_budget(self.context_length, len(self.codec.encode(prompt)), asked)
        ctx = retrieve_context(retrieve, prompt, self.codec, budget, k=k, filters=filters)
        full = ctx.block + prompt
        if asked is None:  # what fits beside the sources and the prompt (at least the reserve; it may slide on)
            kwargs["max_tokens"] = max(1, self.context_length - len(self.codec.encode(full)))
        gen = self.complete(full, **kwargs)
        supports, method = ground(gen.text, ctx)
        return Answer(gen.text, ctx.citations, supports, full, gen.finish_reason, method)

    def generate(self, prompt: str, **kwargs: Any) -> str:
        """The generated continuation of ``prompt`` (without the prompt)."""
        return self.complete(prompt, **kwargs).text

    def stream(self, prompt: str, **kwargs: Any) -> Iterator[str]:
        """Yield text pieces as tokens are sampled; stop strings never leak. Slides past the context
        like ``complete``."""
        from ..sampling.text import eos_id, stream_text

        slide = bool(kwargs.pop("sliding_window", True))
        return stream_text(self.model, self.codec, prompt, self.params(**kwargs), eos_id=eos_id(self.codec),
                           slide=slide)

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

    @classmethod
    def from_checkpoint(cls, path: Path, meta: dict[str, Any], device: str = "cpu", quantize: str | None = None,
                         dtype: str | None = None, adapters: list[tuple[Path, dict[str, Any]]] = ()) -> TextModel:
        """A genforge checkpoint folder (``meta`` is its genforge.json) as a ``TextModel``; ``adapters``
        (folder, genforge.json) are LoRA adapters of this base, folded into its weights in order."""
        from ..checkpoint import check_weights_fit_config, load_tensors, load_weights
        from ..codecs import codec_from_dict
        from ..models import build_model

        device = _check_load_args(device, dtype)
        codec = codec_from_dict(meta["codec"])
        fields = {k: v for k, v in meta["model"].items() if k != "kind"}
        check_weights_fit_config(path, meta)  # before building: a wrong config must not allocate first
        # built on the CPU, not the meta device: meta initialisers import torch._dynamo (~1 s)
        model = build_model(meta["model"]["kind"], fields, init=False)
        _check_vocabularies(codec, model, path)
        load_weights(model, load_tensors(path, "model.safetensors", meta), path)
        if adapters:
            from ..models.lora import LoRAConfig, add_lora, load_adapter, merge_lora

            for apath, ameta in adapters:
                info = {k: v for k, v in ameta["adapter"].items() if k not in ("base", "base_sha256")}
                add_lora(model, LoRAConfig.from_dict(info))
                load_adapter(model, load_tensors(apath, "model.safetensors", ameta), str(apath))
                merge_lora(model)
            meta = {**meta, "adapters": [str(a) for a, _ in adapters]}
            path = adapters[-1][0]  # the model is the adapted one: named by its (last) adapter
        return cls(_place(model, device, dtype, quantize), codec, meta, path)


    @classmethod
    def from_hf_gpt2(cls, path: Path, device: str = "cpu", quantize: str | None = None,
                      dtype: str | None = None) -> TextModel:
        """A Hugging Face GPT-2 folder (config.json + model.safetensors + tokenizer.json) as a ``TextModel``."""
        from ..codecs.bpe import BPECodec
        from ..models.gpt2_hf import load_gpt2_hf

        device = _check_load_args(device, dtype)
        tok = path / "tokenizer.json"
        if not tok.is_file():
            raise CheckpointError(f"{path} has GPT-2 weights but no tokenizer.json to encode text with")
        codec = BPECodec.load(tok)
        # on the CPU the weights are read straight into their decode form (int8 or transposed fp32)
        layout = (quantize or "fp32") if device == "cpu" else None
        model = load_gpt2_hf(path, layout=layout)
        _check_vocabularies(codec, model, path)
        meta = {"model": {"kind": "transformer"}, "source": "huggingface-gpt2", "pipeline": "text"}
        return cls(_place(model, device, dtype, quantize), codec, meta, path)


def _check_load_args(device: str, dtype: str | None) -> str:
    from ..device import resolve_device

    if dtype not in (None, "fp32", "bf16", "fp16"):
        raise ConfigError(f"dtype={dtype!r} is unknown: allowed None, 'fp32', 'bf16' or 'fp16'")
    return str(resolve_device(device, field="device"))


def _check_vocabularies(codec: Codec, model: torch.nn.Module, path: Path) -> None:
    """A codec with ids the model has no logits for (or the reverse) would lose tokens silently."""
    if codec.vocab_size != model.vocab_size:
        raise CheckpointError(f"{path}: the codec has {codec.vocab_size} tokens but the model's vocabulary is "
                              f"{model.vocab_size}: the codec and the weights do not belong together")


def _place(model: torch.nn.Module, device: str, dtype: str | None, quantize: str | None) -> torch.nn.Module:
    from ..models.inference import prepare_for_inference

    model = model.float().to(device)
    if dtype in ("bf16", "fp16"):
        model = model.to(torch.bfloat16 if dtype == "bf16" else torch.float16)
    prepare_for_inference(model, quantize)
    return model
