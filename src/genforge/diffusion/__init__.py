"""The forward (noising) process of diffusion models: noise schedules and the denoiser's preconditioning.

Everything here works in the variance-exploding form of Karras et al. 2022 ("Elucidating the Design
Space of Diffusion-Based Generative Models", EDM): a noisy image is ``x = x0 + sigma * eps``. The
variance-preserving schedules of DDPM (Ho et al. 2020) are the same process seen at another scale
(``x_vp = x / sqrt(1 + sigma**2)``), so one set of samplers (``genforge.sampling.diffusion``) serves
every schedule and every network.
"""
