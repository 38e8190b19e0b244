"""Diffusion samplers as pure functions over any denoiser ``D(x, sigma, cond) -> x0 estimate``.

Each takes the starting noise ``x`` (already scaled by ``sigmas[0]``), the decreasing noise levels
``sigmas`` (ending at 0, see ``genforge.diffusion.schedules``), an optional condition, an explicit
``torch.Generator`` for the stochastic ones and a ``callback(i, n)`` for progress; each returns the
clean sample. They work in the variance-exploding form ``x = x0 + sigma * eps`` (Karras et al. 2022),
where every VP-trained model is also at home (``genforge.diffusion.precondition``), so any sampler
runs any model. Guidance is a wrapper around the denoiser (``classifier_free_guidance``), not a flag.

The stochastic samplers' noise is drawn on the CPU from ``rng`` and moved to ``x``'s device, so a
seed gives the same images on every device type (up to the device's arithmetic).
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from ..types import Denoiser

Callback = Callable[[int, int], None] | None


def _noise_like(x: Tensor, rng: torch.Generator | None) -> Tensor:
    return torch.randn(x.shape, generator=rng, dtype=torch.float32).to(x.device, x.dtype)


def _s(sigma: float, x: Tensor) -> Tensor:
    return torch.full((x.shape[0],), sigma, device=x.device, dtype=torch.float32)


def ancestral_step(sigma: float, sigma_next: float, eta: float = 1.0) -> tuple[float, float]:
    """(sigma_down, sigma_up) of one stochastic step from ``sigma`` to ``sigma_next``.

    With ``eta = 1`` this is the exact posterior q(x_next | x, x0) of the forward process (DDPM, Ho et
    al. 2020, eq. 6-7, written for x = x0 + sigma * eps): mean ``x0 + (sigma_next/sigma)**2 (x - x0)``,
    variance ``sigma_next**2 (1 - sigma_next**2 / sigma**2)``. ``eta`` scales the added noise as DDIM's
    eta does (Song et al. 2021, eq. 16); ``eta = 0`` is deterministic DDIM."""
    if sigma_next == 0:
        return 0.0, 0.0
    up = eta * math.sqrt(max(sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2, 0.0))
    return math.sqrt(max(sigma_next**2 - up**2, 0.0)), up


@torch.no_grad()
def sample_ddim(denoiser: Denoiser, x: Tensor, sigmas: Tensor, cond: Tensor | None = None, eta: float = 0.0,
                rng: torch.Generator | None = None, callback: Callback = None) -> Tensor:
    """DDIM (Song et al. 2021, "Denoising Diffusion Implicit Models", eq. 12): move to the next noise
    level along the predicted noise, adding ``eta``-scaled fresh noise. ``eta = 0`` is deterministic
    (Euler's method on the probability-flow ODE); ``eta = 1`` is DDPM's ancestral sampling."""
    levels = sigmas.tolist()
    n = len(levels) - 1
    for i in range(n):
        x0 = denoiser(x, _s(levels[i], x), cond)
        down, up = ancestral_step(levels[i], levels[i + 1], eta)
        eps = (x - x0) / levels[i]
        x = x0 + down * eps
        if up > 0:
            x = x + up * _noise_like(x, rng)
        if callback is not None:
            callback(i + 1, n)
    return x


def sample_ddpm(denoiser: Denoiser, x: Tensor, sigmas: Tensor, cond: Tensor | None = None,
                rng: torch.Generator | None = None, callback: Callback = None) -> Tensor:
    """DDPM ancestral sampling (Ho et al. 2020, Algorithm 2): each step draws from the forward process's
    posterior given the denoiser's x0, with the posterior variance (their "beta tilde")."""
    return sample_ddim(denoiser, x, sigmas, cond, eta=1.0, rng=rng, callback=callback)


@torch.no_grad()
def sample_heun(denoiser: Denoiser, x: Tensor, sigmas: Tensor, cond: Tensor | None = None,
                rng: torch.Generator | None = None, callback: Callback = None) -> Tensor:
    """Heun's second-order method on the probability-flow ODE ``dx/dsigma = (x - D(x, sigma)) / sigma``
    (Karras et al. 2022, Algorithm 1, deterministic): an Euler step, then the trapezoidal correction
    (two denoiser calls per step, one on the last step to sigma = 0). ``rng`` is unused."""
    levels = sigmas.tolist()
    n = len(levels) - 1
    for i in range(n):
        s, s_next = levels[i], levels[i + 1]
        d = (x - denoiser(x, _s(s, x), cond)) / s
        x_euler = x + (s_next - s) * d
        if s_next == 0:
            x = x_euler
        else:
            d_next = (x_euler - denoiser(x_euler, _s(s_next, x), cond)) / s_next
            x = x + (s_next - s) * (d + d_next) / 2
        if callback is not None:
            callback(i + 1, n)
    return x


@torch.no_grad()
def sample_dpmpp_2m(denoiser: Denoiser, x: Tensor, sigmas: Tensor, cond: Tensor | None = None,
                    rng: torch.Generator | None = None, callback: Callback = None) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", Algorithm 2): a multistep second-order solver of
    the probability-flow ODE in data-prediction form, in log-noise time ``t = -log(sigma)``; it reuses the
    previous step's x0 estimate, so it costs one denoiser call per step. Deterministic; ``rng`` unused."""
    levels = sigmas.tolist()
    n = len(levels) - 1
    old_x0, h_last = None, None
    for i in range(n):
        s, s_next = levels[i], levels[i + 1]
        x0 = denoiser(x, _s(s, x), cond)
        if s_next == 0:
            x = x0
        else:
            t, t_next = -math.log(s), -math.log(s_next)
            h = t_next - t
            if old_x0 is None:  # first step: first order (DPM-Solver++(1) = DDIM)
                d = x0
            else:
                r = h_last / h
                d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * old_x0
            x = (s_next / s) * x - math.expm1(-h) * d
            h_last = h
        old_x0 = x0
        if callback is not None:
            callback(i + 1, n)
    return x


def classifier_free_guidance(denoiser: Denoiser, scale: float, null_cond: int) -> Denoiser:
    """Classifier-free guidance (Ho & Salimans 2022): ``D_null + scale * (D_cond - D_null)``, both halves in
    one batched call. ``scale = 1`` is the plain conditional model; ``null_cond`` is the class id the
    model learned as "no condition" (labels were dropped to it during training)."""

    def guided(x: Tensor, sigma: Tensor, cond: Tensor | None = None) -> Tensor:
        if cond is None or scale == 1.0:
            return denoiser(x, sigma, cond)
        null = torch.full_like(cond, null_cond)
        both = denoiser(torch.cat([x, x]), torch.cat([sigma, sigma]), torch.cat([cond, null]))
        d_cond, d_null = both.chunk(2)
        return d_null + scale * (d_cond - d_null)

    return guided


SAMPLERS: dict[str, Callable[..., Tensor]] = {
    "ddpm": sample_ddpm, "ddim": sample_ddim, "heun": sample_heun, "dpmpp_2m": sample_dpmpp_2m,
}
DENOISER_CALLS = {"ddpm": 1, "ddim": 1, "heun": 2, "dpmpp_2m": 1}  # per step (Heun: one on its last step)


def sample(name: str, denoiser: Denoiser, x: Tensor, sigmas: Tensor, cond: Tensor | None = None,
           rng: torch.Generator | None = None, callback: Callback = None, **kwargs) -> Tensor:
    """Run the sampler called ``name`` (a key of ``SAMPLERS``)."""
    if name not in SAMPLERS:
        raise ValueError(f"sampler {name!r} is unknown: allowed {', '.join(SAMPLERS)}")
    return SAMPLERS[name](denoiser, x, sigmas, cond, rng=rng, callback=callback, **kwargs)


@torch.no_grad()
def generate_samples(denoiser: Denoiser, sigmas: Tensor, n: int, shape: tuple[int, ...],
                     labels: Tensor | None = None, null_class: int | None = None, sampler: str = "dpmpp_2m",
                     guidance: float = 1.0, seed: int = 0, device: torch.device | str = "cpu",
                     callback: Callback = None, **kwargs) -> Tensor:
    """``n`` samples of ``shape`` visiting the noise levels ``sigmas``, clamped to [-1, 1].

    ``labels`` (n,) condition the samples; with ``guidance != 1`` classifier-free guidance pushes away
    from ``null_class``. One seed, one set of images: the starting noise and every sampler draw come
    from a CPU generator.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler {sampler!r} is unknown: allowed {', '.join(SAMPLERS)}")
    sigmas = sigmas.to(device)
    rng = torch.Generator().manual_seed(seed)
    x = (torch.randn((n, *shape), generator=rng) * float(sigmas[0])).to(device)
    d = denoiser
    if labels is not None:
        labels = labels.to(device)
        if guidance != 1.0:
            if null_class is None:
                raise ValueError("guidance needs the model's null class")
            d = classifier_free_guidance(denoiser, guidance, null_class)
    return sample(sampler, d, x, sigmas, labels, rng=rng, callback=callback, **kwargs).clamp(-1, 1)
