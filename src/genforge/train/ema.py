"""Exponential moving average of a model's weights (Polyak & Juditsky 1992), as GANs and diffusion
models keep for sampling: ``shadow = decay * shadow + (1 - decay) * weights`` after every step."""
from __future__ import annotations

import torch
from torch import Tensor, nn


class EMA:
    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay {decay} must be in [0, 1)")
        self.decay = decay
        self.shadow = {n: p.detach().clone() for n, p in model.named_parameters()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for n, p in model.named_parameters():
            self.shadow[n].lerp_(p.detach(), 1.0 - self.decay)

    def state(self, prefix: str = "ema.") -> dict[str, Tensor]:
        """The averaged weights as checkpoint tensors."""
        return {prefix + n: t for n, t in self.shadow.items()}

    def load_state(self, tensors: dict[str, Tensor], prefix: str = "ema.") -> None:
        for n in self.shadow:
            self.shadow[n].copy_(tensors[prefix + n])
