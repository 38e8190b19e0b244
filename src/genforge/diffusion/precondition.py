"""The denoiser around a network: what the network sees and predicts, and the training target.

Samplers want ``D(x, sigma, cond)``, an estimate of the clean image x0 from ``x = x0 + sigma * eps``.
Networks are easier to train on unit-variance inputs and targets, so the network sees the VP-scaled
input ``x * c_in`` with ``c_in = 1 / sqrt(1 + sigma**2)`` (exactly DDPM's ``x_t``), the noise level as
``c_noise = log(sigma) / 4`` (Karras et al. 2022, table 1), and predicts either

- ``eps``: the noise (Ho et al. 2020): ``x0 = x - sigma * eps``;
- ``v``: ``v = alpha * eps - s * x0`` with ``alpha = c_in``, ``s = sigma * c_in`` (Salimans & Ho 2022,
  "Progressive Distillation", sec. 4): ``x0 = alpha * x_t - s * v``; its loss weights every noise level
  alike and stays well posed at high noise, where eps-prediction's x0 estimate divides by nothing.

The training loss is the plain mean squared error of the network's prediction against its target,
for sigmas drawn uniformly from the training schedule (DDPM's "simple" loss).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

PREDICTIONS = ("eps", "v")


def _bcast(sigma: Tensor, x: Tensor) -> Tensor:
    return sigma.reshape(-1, *([1] * (x.dim() - 1))).to(x.dtype)


def c_noise(sigma: Tensor) -> Tensor:
    return sigma.clamp(min=1e-20).log() / 4


class NetworkDenoiser:
    """A ``genforge.types.Denoiser``, ``D(x, sigma, cond)``, from a network ``net(x_t, c_noise, cond)``
    that predicts eps or v."""

    def __init__(self, net: nn.Module, prediction: str = "eps") -> None:
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction {prediction!r} is unknown: allowed {', '.join(PREDICTIONS)}")
        self.net, self.prediction = net, prediction

    def __call__(self, x: Tensor, sigma: Tensor, cond: Tensor | None = None) -> Tensor:
        s = _bcast(sigma, x)
        c_in = 1 / (1 + s**2).sqrt()
        out = self.net(x * c_in, c_noise(sigma), cond)
        if self.prediction == "eps":
            return x - s * out
        return c_in * (x * c_in) - s * c_in * out  # alpha * x_t - sigma_vp * v

    def loss(self, x0: Tensor, sigma: Tensor, noise: Tensor, cond: Tensor | None = None) -> Tensor:
        """Mean squared error of the network's eps or v prediction at ``x = x0 + sigma * noise``."""
        s = _bcast(sigma, x0)
        c_in = 1 / (1 + s**2).sqrt()
        out = self.net((x0 + s * noise) * c_in, c_noise(sigma), cond)
        target = noise if self.prediction == "eps" else c_in * noise - s * c_in * x0  # alpha*eps - sigma_vp*x0
        return torch.mean((out.float() - target.float()) ** 2)
