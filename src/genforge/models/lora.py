"""LoRA adapters (Hu et al. 2021, "LoRA: Low-rank adaptation of large language models").

A frozen Linear ``W`` gains a trainable low-rank update: y = W x + (alpha / r) * B (A x), with A (r, in)
drawn like a Linear's weight (Kaiming-uniform) and B (out, r) zero, so training starts exactly at the
base model. Only A and B train and are saved (``adapter_tensors``): a rank-8 adapter on a 6-layer,
288-wide model is about 1% of its weights. For inference an adapter is folded into the weights
(``merge_lora``: W + (alpha / r) B A), which then decode at the base model's speed.

``[adapter]`` in a recipe: ``kind = "lora"``, ``rank``, ``alpha`` and ``targets``, the names of the
Linear layers to adapt (the last part of the module name: the Transformer's ``c_attn``, ``c_proj``,
``c_fc``, ``lm_head``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConfigError

DEFAULT_TARGETS = ("c_attn", "c_proj", "c_fc")  # attention and MLP projections of every block


@dataclass(frozen=True)
class LoRAConfig:
    """The ``[adapter]`` section of a recipe."""

    kind: str = "lora"
    rank: int = 8
    alpha: float = 16.0
    targets: tuple[str, ...] = field(default=DEFAULT_TARGETS)

    def __post_init__(self) -> None:
        if self.kind != "lora":
            raise ConfigError(f"adapter.kind={self.kind!r} is unknown: allowed 'lora'")
        if not isinstance(self.rank, int) or self.rank < 1:
            raise ConfigError(f"adapter.rank={self.rank!r} is invalid: an integer >= 1")
        if not (isinstance(self.alpha, int | float) and 0 < self.alpha <= 1e4 and math.isfinite(self.alpha)):
            raise ConfigError(f"adapter.alpha={self.alpha!r} is invalid: 0 < alpha <= 10000")
        if not self.targets or not all(isinstance(t, str) and t for t in self.targets):
            raise ConfigError(f"adapter.targets={list(self.targets)!r} must name Linear layers, e.g. "
                              f"{list(DEFAULT_TARGETS)}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LoRAConfig:
        unknown = set(d) - {"kind", "rank", "alpha", "targets"}
        if unknown:
            raise ConfigError(f"[adapter] has unknown keys {sorted(unknown)}: allowed kind, rank, alpha, targets")
        targets = d.get("targets", DEFAULT_TARGETS)
        if isinstance(targets, str):
            targets = (targets,)
        return cls(kind=d.get("kind", "lora"), rank=d.get("rank", 8), alpha=d.get("alpha", 16.0),
                   targets=tuple(targets))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "rank": self.rank, "alpha": self.alpha, "targets": list(self.targets)}


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable rank-``r`` update scaled by alpha / r."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        self.base = base.requires_grad_(False)
        self.scale = alpha / rank
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, device=base.weight.device))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    def forward(self, x: Tensor) -> Tensor:
        return self.base(x) + (x @ self.lora_A.t().to(x.dtype)) @ self.lora_B.t().to(x.dtype) * self.scale

    def merged(self) -> nn.Linear:
        """The base Linear with the update folded in, as a new weight (a tied weight stays untouched)."""
        lin = self.base
        with torch.no_grad():
            w = lin.weight + (self.lora_B @ self.lora_A * self.scale).to(lin.weight.dtype)
        lin.weight = nn.Parameter(w, requires_grad=False)
        return lin


def add_lora(model: nn.Module, cfg: LoRAConfig) -> list[str]:
    """Wrap every Linear whose name ends in one of ``cfg.targets`` (in place) and freeze everything else;
    returns the wrapped names. A target that matches nothing, or a rank above a layer's smaller side, is a
    ConfigError naming it."""
    model.requires_grad_(False)
    linears = {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    wrapped = []
    for target in cfg.targets:
        names = [n for n in linears if n.split(".")[-1] == target]
        if not names:
            kinds = sorted({n.split(".")[-1] for n in linears})
            raise ConfigError(f"adapter.targets: {target!r} names no Linear layer of this model (it has {kinds})")
        for name in names:
            lin = linears[name]
            side = min(lin.in_features, lin.out_features)
            if cfg.rank > side:
                raise ConfigError(f"adapter.rank={cfg.rank} is larger than layer {name} ({lin.in_features} -> "
                                  f"{lin.out_features}) allows: at most {side}")
            parent, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, attr, LoRALinear(lin, cfg.rank, cfg.alpha))
            wrapped.append(name)
    return wrapped


def adapter_tensors(model: nn.Module) -> dict[str, Tensor]:
    """Only the adapter's weights (``...lora_A``, ``...lora_B``), contiguous on the CPU."""
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if ".lora_" in n}


def load_adapter(model: nn.Module, tensors: dict[str, Tensor], where: str) -> None:
    """Copy adapter weights into a model that ``add_lora`` prepared with the same config."""
    own = {n: p for n, p in model.named_parameters() if ".lora_" in n}
    missing, extra = sorted(set(own) - set(tensors)), sorted(set(tensors) - set(own))
    if missing or extra:
        raise ConfigError(f"{where}: the adapter's weights do not fit this model (missing {missing[:2]}, "
                          f"unexpected {extra[:2]})")
    with torch.no_grad():
        for n, p in own.items():
            if tensors[n].shape != p.shape:
                raise ConfigError(f"{where}: {n} has shape {tuple(tensors[n].shape)}, the model expects "
                                  f"{tuple(p.shape)}")
            p.copy_(tensors[n])


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every ``LoRALinear`` into its base Linear (in place): the plain model, adapted."""
    for name, m in list(model.named_modules()):
        if isinstance(m, LoRALinear):
            parent, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, attr, m.merged())
    return model
