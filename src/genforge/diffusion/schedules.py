"""Noise schedules as pure functions: noise levels ``sigma`` for training and for sampling.

A variance-preserving (VP) schedule gives ``alpha_bar_t`` (the signal kept at step t of T); its noise
level in the variance-exploding form used everywhere else is ``sigma_t = sqrt((1 - alpha_bar_t) /
alpha_bar_t)`` (``vp_sigmas``). Sampling visits a decreasing list of sigmas ending at 0.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

SCHEDULES = ("linear", "cosine")  # training schedules (alpha_bar over T steps)
SPACINGS = ("uniform", "karras")  # how sampling picks its sigmas
# the spacing each sampler uses unless told: DDPM and DDIM step through the training levels uniformly,
# the ODE solvers on Karras et al.'s spacing
DEFAULT_SPACING = {"ddpm": "uniform", "ddim": "uniform", "heun": "karras", "dpmpp_2m": "karras"}


def linear_alpha_bars(steps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> Tensor:
    """DDPM's linear beta schedule (Ho et al. 2020, sec. 4): ``alpha_bar_t = prod_{s<=t} (1 - beta_s)``.

    The betas are scaled by 1000 / steps so other step counts span the same noise range."""
    scale = 1000 / steps
    betas = torch.linspace(beta_start * scale, beta_end * scale, steps, dtype=torch.float64)
    return torch.cumprod(1 - betas, dim=0)


def cosine_alpha_bars(steps: int, s: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """The cosine schedule of Nichol & Dhariwal 2021 ("Improved DDPM", eq. 17), betas clipped at 0.999."""
    t = torch.arange(steps + 1, dtype=torch.float64) / steps
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(max=max_beta)
    return torch.cumprod(1 - betas, dim=0)


def alpha_bars(schedule: str, steps: int) -> Tensor:
    if schedule == "linear":
        return linear_alpha_bars(steps)
    if schedule == "cosine":
        return cosine_alpha_bars(steps)
    raise ValueError(f"noise schedule {schedule!r} is unknown: allowed {', '.join(SCHEDULES)}")


def vp_sigmas(alpha_bar: Tensor) -> Tensor:
    """Variance-exploding noise levels of a VP schedule: sigma = sqrt((1 - alpha_bar) / alpha_bar)."""
    return ((1 - alpha_bar) / alpha_bar).sqrt()


def training_sigmas(schedule: str, steps: int = 1000) -> Tensor:
    """The T increasing noise levels a model trains on (float32); training draws one uniformly per image."""
    return vp_sigmas(alpha_bars(schedule, steps)).float()


def karras_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> Tensor:
    """Karras et al. 2022, eq. 5: n levels from sigma_max down to sigma_min, evenly spaced in
    sigma**(1/rho), so steps crowd at low noise where detail forms; then a final 0."""
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (hi + ramp * (lo - hi)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)]).float()


def uniform_sigmas(train: Tensor, n: int) -> Tensor:
    """n of the training noise levels, evenly spaced in the step index from the noisiest down (DDIM's
    "trailing" spacing: the first sampling step is the last training step), then a final 0."""
    if not 1 <= n <= len(train):
        raise ValueError(f"steps={n} is out of range: allowed 1 .. {len(train)} (the training steps)")
    idx = (torch.arange(n, 0, -1, dtype=torch.float64) * len(train) / n).round().long() - 1
    return torch.cat([train[idx], train.new_zeros(1)])


def sampling_sigmas(train: Tensor, n: int, spacing: str = "uniform", rho: float = 7.0) -> Tensor:
    """The n + 1 decreasing sigmas a sampler visits (the last is 0) for a model trained on ``train``;
    ``spacing`` may also name a sampler (its ``DEFAULT_SPACING``)."""
    spacing = DEFAULT_SPACING.get(spacing, spacing)
    if spacing == "uniform":
        return uniform_sigmas(train, n)
    if spacing == "karras":
        if n < 1:
            raise ValueError(f"steps={n} is out of range: at least 1")
        return karras_sigmas(n, float(train[0]), float(train[-1]), rho)
    raise ValueError(f"sigma spacing {spacing!r} is unknown: allowed {', '.join(SPACINGS)}")
