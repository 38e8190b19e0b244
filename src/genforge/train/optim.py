"""Optimizers (AdamW; or Muon + AdamW) and the warmup + cosine schedule."""
from __future__ import annotations

import math

import torch
from torch import nn

from ..config import TrainConfig
from ..errors import ConfigError


def make_optimizers(model: nn.Module, cfg: TrainConfig, device: torch.device) -> list[torch.optim.Optimizer]:
    """The optimizers that together step every trainable parameter, per ``cfg.optimizer``.

    ``adamw``: one AdamW (Loshchilov & Hutter 2019); biases, norms and embeddings-as-vectors get no
    decay. ``muon``: Muon (Jordan et al. 2024; torch.optim.Muon) for the 2-D weights inside the
    Transformer blocks, whose updates it orthogonalizes, and AdamW as above for everything else
    (embeddings, the output layer, norms), as Muon's authors prescribe.
    """
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    hidden: list[torch.Tensor] = []
    if cfg.optimizer == "muon":
        if getattr(model, "kind", None) != "transformer":
            raise ConfigError("train.optimizer='muon' is for Transformers (model.kind='transformer'): "
                              "use train.optimizer='adamw'")
        hidden = [p for n, p in params if p.dim() == 2 and n.startswith("transformer.h.")]
    taken = {id(p) for p in hidden}
    rest = [p for _, p in params if id(p) not in taken]
    groups = [{"params": [p for p in rest if p.dim() >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in rest if p.dim() < 2], "weight_decay": 0.0}]
    # fused: one kernel per step on GPUs, and ~1.5x faster than foreach on CPUs (we measured 2.8 vs
    # 4.4 ms a step for the 0.8M-parameter nanoGPT config on 2 cores)
    opts: list[torch.optim.Optimizer] = [torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2),
                                                           fused=True)]
    if hidden:
        opts.append(torch.optim.Muon(hidden, lr=cfg.muon_lr, weight_decay=cfg.weight_decay))
    return opts


def set_lr(opts: list[torch.optim.Optimizer], lr: float, cfg: TrainConfig) -> None:
    """AdamW at the schedule's ``lr``; Muon at the same fraction of its own peak, ``cfg.muon_lr``
    (from the config, so a resumed run follows the config it resumes with)."""
    for opt in opts:
        rate = lr * cfg.muon_lr / cfg.lr if isinstance(opt, torch.optim.Muon) else lr
        for g in opt.param_groups:
            g["lr"] = rate


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to ``lr`` over ``warmup_steps``, then cosine decay to ``min_lr`` at ``max_steps``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / (cfg.warmup_steps + 1)
    span = max(1, cfg.max_steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.lr - cfg.min_lr)
