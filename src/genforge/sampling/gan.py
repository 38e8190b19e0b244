"""GAN sampling: latent noise (optionally truncated) through a generator, in one call.

A GAN samples in one forward pass: ``G(z, labels)``. What there is to decide is the noise. Plain
sampling draws z ~ N(0, I). The *truncation trick* (Brock et al. 2019, "Large Scale GAN Training for
High Fidelity Natural Image Synthesis", section 3.1) redraws every coordinate of z whose magnitude
exceeds a threshold t, so z comes from a truncated normal: smaller t trades variety for fidelity
(samples near the mode of what G learned). t = None is plain N(0, I).

The noise is drawn on the CPU from a ``torch.Generator`` seeded by ``seed`` and then moved to the
device, so a seed gives the same images on every device type (up to the device's arithmetic), as the
diffusion samplers do.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..errors import GenforgeError

MAX_REDRAWS = 10_000  # rounds of redrawing before the (astronomically rare) stragglers are clamped


def truncated_noise(n: int, z_dim: int, truncation: float | None, rng: torch.Generator) -> Tensor:
    """(n, z_dim) float32 noise from ``rng``: N(0, I), or with every |z_i| <= ``truncation`` by redrawing
    the coordinates above it (not clamping them, which would pile mass up at +-t)."""
    z = torch.randn(n, z_dim, generator=rng)
    if truncation is None:
        return z
    if isinstance(truncation, bool) or not isinstance(truncation, int | float) or not (
            math.isfinite(truncation) and truncation > 0):
        raise GenforgeError(f"truncation={truncation!r} is invalid: allowed a number > 0, or none for plain noise")
    for _ in range(MAX_REDRAWS):
        bad = z.abs() > truncation
        if not bad.any():
            return z
        z[bad] = torch.randn(int(bad.sum()), generator=rng)
    return z.clamp_(-truncation, truncation)


@torch.no_grad()
def generate_gan_samples(generator: nn.Module, n: int, z_dim: int, labels: Tensor | None = None,
                         truncation: float | None = None, seed: int = 0,
                         device: torch.device | str = "cpu") -> Tensor:
    """``n`` images (n, C, H, W) in [-1, 1] from ``generator(z, labels)``.

    ``labels``: (n,) class ids, or None for an unconditional generator. ``truncation``: see the module
    docstring. The generator runs in eval mode (BatchNorm uses its running statistics, so an image does
    not depend on the others in the batch) and is put back in the mode it was in.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise GenforgeError(f"n={n!r} is invalid: allowed an integer >= 1")
    if labels is not None and tuple(labels.shape) != (n,):
        raise GenforgeError(f"labels must have shape ({n},), got {tuple(labels.shape)}")
    z = truncated_noise(n, z_dim, truncation, torch.Generator().manual_seed(seed))
    was_training = generator.training
    generator.eval()
    try:
        return generator(z.to(device), labels.to(device) if labels is not None else None).float()
    finally:
        generator.train(was_training)
