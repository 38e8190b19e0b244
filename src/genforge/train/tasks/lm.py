"""Language modelling: next-token prediction over token windows of a text corpus (``[task] kind = "lm"``).

The codec is built once (by rank 0), shared through ``codec.json`` in the run folder, and travels in
every checkpoint. Fine-tuning (``train.init_from``) takes the base model's codec, shape and weights.
With an ``[adapter]`` (``kind = "lora"``) the base stays frozen and only a LoRA adapter trains
(``models.lora``); checkpoints then hold the adapter alone and record which base it belongs to (its
name and the SHA-256 of its weights), and loading applies it to that base.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...atomic import atomic_write_text
from ...config import RunConfig
from ...errors import ConfigError
from .. import runtime as rtm
from . import Batch, Phase

FINE_TUNABLE = ("dropout",)  # model fields a fine-tuning recipe may change from its base model


def lm_loss(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """Next-token cross-entropy (nats per token); logits upcast so bf16 never reaches the softmax."""
    logits = model(x)
    return F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.view(-1))


def _build_codec(cfg: RunConfig, corpus: str):
    from ...data.corpus import iter_corpus
    from ...registry import CODECS

    return CODECS.get(cfg.codec.kind, "codec.kind").from_corpus(iter_corpus(corpus), cfg.codec)


def corpus_for(cfg: RunConfig, main: bool) -> tuple[str, float]:
    """The text the codec and shards read, and the validation share of its tokens: the recipe's corpus, or
    what the data layer prepares from it for the codec (``registry.CORPORA``: canonical SMILES, music event
    lines), made once by the main process (the others find it in the cache)."""
    from ...registry import CORPORA

    if cfg.codec.kind not in CORPORA:
        return cfg.data.corpus, cfg.data.val_fraction
    path, val_fraction, report = CORPORA.get(cfg.codec.kind)(cfg)
    if main:
        print(f"{cfg.codec.kind}: {report}", flush=True)
    return str(path), cfg.data.val_fraction if val_fraction is None else val_fraction


def _with_unknown(codec: dict[str, Any], cfg: RunConfig) -> dict[str, Any]:
    """A base model's character codec with the recipe's ``codec.unknown`` (fine-tuning on text holding
    characters the base never saw: they become that character, which must be in the vocabulary)."""
    if not cfg.codec.unknown or codec.get("kind") != "char" or codec.get("unknown"):
        return codec
    if cfg.codec.unknown not in codec.get("chars", ""):
        raise ConfigError(f"codec.unknown={cfg.codec.unknown!r} is not in the base model's vocabulary: pick one of "
                          f"its characters, e.g. ' '")
    return {**codec, "unknown": cfg.codec.unknown}


def _config_defaults(kind: str) -> dict[str, Any]:
    from ...registry import MODELS

    cls = MODELS.get(kind, "model.kind").config_class
    return {f.name: f.default for f in dataclasses.fields(cls)}


def model_spec(cfg: RunConfig, vocab_size: int, base: dict[str, Any] | None) -> tuple[str, dict[str, Any]]:
    """The model kind and config fields to build: from the recipe, or from the base model when fine-tuning."""
    fields = {k: v for k, v in cfg.model.items() if k != "kind"}
    if base is not None:
        base_fields = {k: v for k, v in base["model"].items() if k != "kind"}
        defaults = _config_defaults(base["model"]["kind"])  # fields older models were saved without
        for k, v in fields.items():
            was = base_fields.get(k, defaults.get(k))
            if k not in FINE_TUNABLE and was != v:
                raise ConfigError(f"model.{k}={v!r} differs from train.init_from's {was!r}: when "
                                  f"fine-tuning only {', '.join(FINE_TUNABLE)} may change; remove model.{k}")
        return base["model"]["kind"], {**base_fields, **fields}
    if "vocab_size" in fields and fields["vocab_size"] != vocab_size:
        raise ConfigError(f"model.vocab_size={fields['vocab_size']} but the codec has {vocab_size} tokens: "
                          "remove model.vocab_size, it is set from the codec")
    fields["vocab_size"] = vocab_size
    return cfg.model["kind"], fields


class LanguageModelTask:
    kind = "lm"
    throughput_unit = "tokens"

    def __init__(self, cfg: RunConfig, rt: rtm.Runtime) -> None:
        self.cfg, self.rt = cfg, rt
        self.base_path: Path | None = None
        self.base: dict[str, Any] | None = None

    def setup(self, out: Path, resume_meta: dict[str, Any] | None) -> None:
        from ...checkpoint import read_meta
        from ...codecs import codec_from_dict
        from ...data.loader import WindowSampler
        from ...data.shards import prepare_shards
        from ...paths import data_home

        cfg, rt = self.cfg, self.rt
        self.adapter = None
        if cfg.adapter:
            from ...models.lora import LoRAConfig

            self.adapter = LoRAConfig.from_dict(cfg.adapter)
            if not cfg.train.init_from:
                raise ConfigError("an [adapter] trains on top of a base model: set train.init_from (e.g. "
                                  "\"shakespeare-char\")")
        if cfg.train.init_from and (resume_meta is None or self.adapter):  # weights and codec from the base
            from ...store import resolve_model

            self.base_path = resolve_model(cfg.train.init_from)
            self.base = read_meta(self.base_path)
            self.base_sha = self.base.get("files", {}).get("model.safetensors", "")
            was = (resume_meta or {}).get("adapter", {}).get("base_sha256")
            if was is not None and was != self.base_sha:
                raise ConfigError(f"train.init_from {cfg.train.init_from!r} holds other weights than the base this "
                                  "adapter run started from: resume with the same base")
        codec_file = out / "codec.json"
        if rt.is_main:
            out.mkdir(parents=True, exist_ok=True)
            source = resume_meta or self.base
            corpus, val_fraction = corpus_for(cfg, main=True)
            self.codec = codec_from_dict(_with_unknown(source["codec"], cfg)) if source else _build_codec(cfg, corpus)
            atomic_write_text(codec_file, json.dumps(self.codec.to_dict()))
            self.shards = prepare_shards(corpus, self.codec, data_home() / "shards", val_fraction)
        rtm.barrier(rt)
        if not rt.is_main:
            self.codec = codec_from_dict(json.loads(codec_file.read_text()))
            corpus, val_fraction = corpus_for(cfg, main=False)
            self.shards = prepare_shards(corpus, self.codec, data_home() / "shards", val_fraction)
        self.model_kind, self.fields = model_spec(cfg, self.codec.vocab_size, resume_meta or self.base)
        self.block = self.fields.get("block_size") or _config_defaults(self.model_kind)["block_size"]
        self.sampler = WindowSampler(self.shards.train, self.block, cfg.train.batch_size, cfg.train.seed,
                                     split="train")

    def build_model(self) -> nn.Module:
        from ...checkpoint import load_tensors, load_weights
        from ...models import build_model

        model = build_model(self.model_kind, self.fields)
        if self.base is not None:
            load_weights(model, load_tensors(self.base_path, "model.safetensors", self.base), self.base_path)
        if self.adapter is not None:
            from ...models.lora import add_lora

            add_lora(model, self.adapter)
        return model

    def saved_weights(self, model: nn.Module) -> dict[str, Tensor]:
        """What a checkpoint's model.safetensors holds: the adapter alone, or every weight."""
        from ...checkpoint import model_tensors
        from ...models.lora import adapter_tensors

        return adapter_tensors(model) if self.adapter is not None else model_tensors(model)

    def restore_weights(self, model: nn.Module, tensors: dict[str, Tensor], where: Path) -> None:
        from ...checkpoint import load_weights
        from ...models.lora import load_adapter

        (load_adapter if self.adapter is not None else load_weights)(model, tensors, where)

    def optimizers(self, model: nn.Module, device: torch.device) -> list[torch.optim.Optimizer]:
        from ..optim import make_optimizers

        return make_optimizers(model, self.cfg.train, device)

    def phases(self) -> list[Phase]:
        n = 2 if self.cfg.train.optimizer == "muon" else 1
        return [Phase(tuple(range(n)), lambda model, batch: lm_loss(model, *batch))]

    def next_batch(self, rank: int, world_size: int) -> Batch:
        return self.sampler.next_batch(rank, world_size)

    def items_per_step(self) -> int:
        return self.cfg.train.batch_size * self.block

    def after_step(self, model: nn.Module) -> None:
        pass

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Mean loss over ``eval_steps`` fixed random validation batches (the same ones every time)."""
        from ...data.loader import WindowSampler

        tc, rt = self.cfg.train, self.rt
        sampler = WindowSampler(self.shards.val, self.block, tc.batch_size, tc.seed + 1, split="val")
        was_training = model.training
        model.eval()
        total = torch.zeros((), device=rt.device)
        for _ in range(tc.eval_steps):
            x, y = sampler.next_batch(rt.rank, rt.world_size)
            with rt.autocast():
                total += lm_loss(model, x.to(rt.device), y.to(rt.device))
        model.train(was_training)
        val = float(rtm.mean_across(total / tc.eval_steps, rt))
        out = {"val_loss": val, "val_bits_per_token": val / math.log(2)}
        # bits per character makes char and BPE models comparable (corpus-wide chars/token)
        cpt = self.shards.meta.get("chars", 0) / max(1, self.shards.meta.get("total_tokens", 0))
        if cpt:
            out["val_bits_per_char"] = val / math.log(2) / cpt
        return out

    def state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        s = self.sampler.state_dict()
        return {"rng.data": s["rng"]}, {"batches": s["batches"]}

    def load_state(self, tensors: dict[str, Tensor], info: dict[str, Any]) -> None:
        self.sampler.load_state_dict({"rng": tensors["rng.data"], "batches": info["batches"]})

    def checkpoint_files(self) -> dict[str, bytes]:
        return {}

    def meta(self) -> dict[str, Any]:
        out = {"model": {"kind": self.model_kind, **self.fields}, "codec": self.codec.to_dict(),
               "init_from": self.cfg.train.init_from or None, "task": self.kind,
               "pipeline": getattr(self.codec, "pipeline", "text")}
        if self.adapter is not None:
            out["adapter"] = {**self.adapter.to_dict(), "base": self.cfg.train.init_from, "base_sha256": self.base_sha}
        return out
