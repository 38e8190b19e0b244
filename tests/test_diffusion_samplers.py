"""Diffusion schedules, preconditioning and samplers, checked against analytic answers.

For Gaussian data x0 ~ N(mu, s^2) the ideal denoiser is known in closed form,
``D(x, sigma) = (s^2 x + sigma^2 mu) / (s^2 + sigma^2)``, and so is the probability-flow ODE:
``x(sigma) = mu + (x(sigma_max) - mu) * sqrt(s^2 + sigma^2) / sqrt(s^2 + sigma_max^2)``. The deterministic
samplers must converge to that solution (the higher-order ones faster), and the stochastic ones must
sample N(mu, s^2).
"""
from __future__ import annotations

import math

import pytest
import torch

from genforge.diffusion.precondition import NetworkDenoiser
from genforge.diffusion.schedules import (
    alpha_bars,
    cosine_alpha_bars,
    karras_sigmas,
    linear_alpha_bars,
    sampling_sigmas,
    training_sigmas,
    uniform_sigmas,
    vp_sigmas,
)
from genforge.sampling.diffusion import (
    SAMPLERS,
    ancestral_step,
    classifier_free_guidance,
    sample,
    sample_ddim,
)

MU, S = 0.7, 0.3
SIGMA_MAX, SIGMA_MIN = 80.0, 0.002


def gaussian_denoiser(x, sigma, cond=None):
    s2 = sigma.reshape(-1, *([1] * (x.dim() - 1))).double() ** 2
    return ((S**2 * x.double() + s2 * MU) / (S**2 + s2)).to(x.dtype)


def exact_flow(x_max):
    return MU + (x_max - MU) * S / math.sqrt(S**2 + SIGMA_MAX**2)


def start(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    return MU + math.sqrt(S**2 + SIGMA_MAX**2) * torch.randn(n, 1, 2, 2, generator=g, dtype=torch.float64)


# --- schedules ----------------------------------------------------------------------------------------
def test_linear_schedule_matches_ddpm_and_cosine_is_clipped():
    ab = linear_alpha_bars(1000)
    assert torch.all(ab[1:] < ab[:-1]) and math.isclose(float(ab[0]), 1 - 1e-4)
    assert 3e-5 < float(ab[-1]) < 5e-5  # DDPM's T=1000 linear schedule ends at alpha_bar ~ 4.0e-5
    cos = cosine_alpha_bars(1000)
    f = [math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2 for t in (0, 1, 500)]
    assert math.isclose(float(cos[0]), f[1] / f[0], rel_tol=1e-9)  # eq. 17 before clipping
    assert math.isclose(float(cos[499]), f[2] / f[0], rel_tol=1e-9)
    betas = 1 - cos[1:] / cos[:-1]
    assert float(betas.max()) <= 0.999 + 1e-12
    with pytest.raises(ValueError, match="allowed linear, cosine"):
        alpha_bars("quadratic", 10)


def test_sigma_lists():
    train = training_sigmas("linear")
    assert torch.allclose(train.double(), vp_sigmas(linear_alpha_bars(1000)).float().double())
    assert torch.all(train[1:] > train[:-1])
    k = karras_sigmas(10, SIGMA_MIN, SIGMA_MAX)
    assert len(k) == 11 and k[-1] == 0 and math.isclose(float(k[0]), SIGMA_MAX, rel_tol=1e-6)
    assert math.isclose(float(k[-2]), SIGMA_MIN, rel_tol=1e-5) and torch.all(k[1:] < k[:-1])
    rho = 7
    inner = k[:-1].double() ** (1 / rho)  # evenly spaced in sigma**(1/rho)
    assert torch.allclose(inner[1:] - inner[:-1], (inner[1] - inner[0]).expand(9), atol=1e-5)
    u = uniform_sigmas(train, 10)
    assert len(u) == 11 and u[0] == train[-1] and u[-1] == 0 and torch.all(u[1:] < u[:-1])
    assert torch.equal(sampling_sigmas(train, 1000), torch.cat([train.flip(0), train.new_zeros(1)]))
    with pytest.raises(ValueError, match="out of range"):
        uniform_sigmas(train, 1001)
    with pytest.raises(ValueError, match="allowed uniform, karras"):
        sampling_sigmas(train, 10, "log")


# --- preconditioning -----------------------------------------------------------------------------------
@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_a_network_that_predicts_its_target_exactly_gives_x0_and_zero_loss(prediction):
    g = torch.Generator().manual_seed(1)
    x0, noise = torch.randn(5, 1, 4, 4, generator=g), torch.randn(5, 1, 4, 4, generator=g)
    sigma = torch.tensor([0.01, 0.5, 1.0, 7.0, 80.0])
    s = sigma.view(-1, 1, 1, 1)
    alpha, s_vp = 1 / (1 + s**2).sqrt(), s / (1 + s**2).sqrt()

    class Oracle(torch.nn.Module):  # knows x0 and the noise: returns the written-out target
        def forward(self, x_t, c_noise, cond):
            assert torch.allclose(x_t, alpha * x0 + s_vp * noise, atol=1e-5)  # the network sees DDPM's x_t
            assert torch.allclose(c_noise, sigma.log() / 4)
            return noise if prediction == "eps" else alpha * noise - s_vp * x0

    d = NetworkDenoiser(Oracle(), prediction)
    assert torch.allclose(d(x0 + s * noise, sigma), x0, atol=1e-4)
    assert float(d.loss(x0, sigma, noise)) < 1e-10
    with pytest.raises(ValueError, match="allowed eps, v"):
        NetworkDenoiser(Oracle(), "x0")


# --- samplers --------------------------------------------------------------------------------------------
def flow_error(name: str, steps: int) -> float:
    x = start()
    out = sample(name, gaussian_denoiser, x, karras_sigmas(steps, SIGMA_MIN, SIGMA_MAX).double())
    return float((out - exact_flow(x)).abs().max())


@pytest.mark.parametrize("name", ["ddim", "heun", "dpmpp_2m"])
def test_deterministic_samplers_converge_to_the_exact_flow(name):
    errors = [flow_error(name, n) for n in (20, 40, 80)]
    assert all(b < a for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < (5e-2 if name == "ddim" else 5e-3), errors


def test_second_order_samplers_beat_ddim_at_equal_steps():
    ddim, heun, dpm = (flow_error(n, 40) for n in ("ddim", "heun", "dpmpp_2m"))
    assert heun < ddim / 5 and dpm < ddim / 5, (ddim, heun, dpm)
    # halving the step size: first order shrinks the error ~2x, second order ~4x
    for name in ("heun", "dpmpp_2m"):
        assert flow_error(name, 40) / flow_error(name, 80) > 3.5, name
    assert 1.7 < flow_error("ddim", 40) / flow_error("ddim", 80) < 2.3


@pytest.mark.parametrize("name,eta", [("ddpm", None), ("ddim", 0.5)])
def test_stochastic_samplers_sample_the_data_distribution(name, eta):
    x = start(n=5000, seed=3)
    kw = {} if eta is None else {"eta": eta}
    out = sample(name, gaussian_denoiser, x, karras_sigmas(200, SIGMA_MIN, SIGMA_MAX).double(),
                 rng=torch.Generator().manual_seed(4), **kw)
    vals = out.flatten()
    assert abs(float(vals.mean()) - MU) < 0.01 and abs(float(vals.std()) - S) / S < 0.03


def test_ddpm_step_is_the_forward_process_posterior():
    sigma, nxt = 2.0, 0.5
    down, up = ancestral_step(sigma, nxt)
    assert math.isclose(down / sigma, nxt**2 / sigma**2)  # posterior mean: x0 + (nxt/sigma)^2 (x - x0)
    assert math.isclose(up**2, nxt**2 * (1 - nxt**2 / sigma**2))
    assert ancestral_step(sigma, nxt, eta=0.0) == (nxt, 0.0)  # DDIM: deterministic, lands on sigma_next
    assert ancestral_step(sigma, 0.0) == (0.0, 0.0)


def test_seeded_samplers_repeat_and_callbacks_count_steps():
    sig = karras_sigmas(6, SIGMA_MIN, SIGMA_MAX)
    x = start(4).float()
    a = sample("ddpm", gaussian_denoiser, x, sig, rng=torch.Generator().manual_seed(9))
    b = sample("ddpm", gaussian_denoiser, x, sig, rng=torch.Generator().manual_seed(9))
    c = sample("ddpm", gaussian_denoiser, x, sig, rng=torch.Generator().manual_seed(10))
    assert torch.equal(a, b) and not torch.equal(a, c)
    for name in SAMPLERS:
        seen: list[tuple[int, int]] = []
        sample(name, gaussian_denoiser, x, sig, rng=torch.Generator().manual_seed(0),
               callback=lambda i, n, seen=seen: seen.append((i, n)))
        assert seen == [(i, 6) for i in range(1, 7)], name
    with pytest.raises(ValueError, match="allowed ddpm, ddim, heun, dpmpp_2m"):
        sample("euler_a", gaussian_denoiser, x, sig)


def test_classifier_free_guidance_extrapolates_from_the_null_condition():
    def denoiser(x, sigma, cond):  # condition c pulls toward c, the null class (9) toward 0
        target = torch.where(cond == 9, 0.0, cond.double()).view(-1, 1, 1, 1)
        return x * 0 + target

    x, sigma, cond = torch.zeros(3, 1, 2, 2), torch.ones(3), torch.tensor([1, 2, 9])
    for w in (0.0, 1.0, 3.0):
        out = classifier_free_guidance(denoiser, w, null_cond=9)(x, sigma, cond)
        want = torch.tensor([w * 1, w * 2, 0.0]).double().view(-1, 1, 1, 1).expand(3, 1, 2, 2)
        assert torch.allclose(out.double(), want), w
    # a guided sampler of the Gaussian with scale 1 equals the unguided one
    g = classifier_free_guidance(lambda x, s, c: gaussian_denoiser(x, s), 1.0, null_cond=9)
    sig = karras_sigmas(8, SIGMA_MIN, SIGMA_MAX).double()
    x = start(8)
    assert torch.equal(sample_ddim(g, x, sig, torch.zeros(8, dtype=torch.long)), sample_ddim(gaussian_denoiser, x, sig))
