"""Diffusion training: a denoiser learns to undo Gaussian noise on images (``[task] kind = "diffusion"``).

Each step draws a batch of images, one noise level per image uniformly from the training schedule's T
levels, and the noise itself; the network's eps or v prediction is regressed on its target (DDPM's
"simple" loss, Ho et al. 2020, eq. 14; ``genforge.diffusion.precondition``). A share ``p_uncond`` of
the labels is replaced by the null class, so the model also learns the unconditional denoiser that
classifier-free guidance needs (Ho & Salimans 2022). EMA weights (``ema_decay``) are kept and are what
sampling uses. Every random draw of a step comes from one generator that is checkpointed, so resume
is exact.

The recipe's ``[data] corpus`` names the images: ``"fashion-mnist"``, ``"mnist-digits"`` or a folder
with one subfolder per class (``genforge.data.images``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ...config import RunConfig, from_dict
from ...errors import ConfigError
from .. import runtime as rtm
from ..ema import EMA
from . import Batch, Phase


@dataclass(frozen=True)
class DiffusionConfig:
    """The ``[task]`` section of a diffusion recipe (besides ``kind``)."""

    prediction: str = "v"  # what the network predicts: "v" (Salimans & Ho 2022) or "eps" (Ho et al. 2020)
    schedule: str = "cosine"  # training noise schedule: "cosine" (Nichol & Dhariwal 2021) or "linear" (DDPM)
    timesteps: int = 1000  # T: noise levels the schedule has
    p_uncond: float = 0.1  # share of labels dropped to the null class (for classifier-free guidance)
    ema_decay: float = 0.999  # weights average kept for sampling
    sample_sampler: str = "dpmpp_2m"  # the sample grid saved with each checkpoint: sampler,
    sample_steps: int = 25  # its steps,
    sample_guidance: float = 2.0  # and its guidance scale (1 = none)

    def __post_init__(self) -> None:
        from ...diffusion.precondition import PREDICTIONS
        from ...diffusion.schedules import SCHEDULES
        from ...sampling.diffusion import SAMPLERS

        for name, value, allowed in (("prediction", self.prediction, PREDICTIONS),
                                     ("schedule", self.schedule, SCHEDULES),
                                     ("sample_sampler", self.sample_sampler, tuple(SAMPLERS))):
            if value not in allowed:
                raise ConfigError(f"task.{name}={value!r} is invalid: allowed {', '.join(allowed)}")
        if not 2 <= self.timesteps <= 100_000:
            raise ConfigError(f"task.timesteps={self.timesteps!r} is invalid: allowed 2 .. 100000")
        if not 0.0 <= self.p_uncond < 1.0:
            raise ConfigError(f"task.p_uncond={self.p_uncond!r} is invalid: allowed 0 <= p_uncond < 1")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"task.ema_decay={self.ema_decay!r} is invalid: allowed 0 <= ema_decay < 1")
        if not 1 <= self.sample_steps <= self.timesteps:
            raise ConfigError(f"task.sample_steps={self.sample_steps!r} is invalid: allowed 1 .. task.timesteps")
        if not 0.0 <= self.sample_guidance <= 30.0:
            raise ConfigError(f"task.sample_guidance={self.sample_guidance!r} is invalid: allowed 0 .. 30")


class DiffusionTask:
    kind = "diffusion"
    throughput_unit = "images"

    def __init__(self, cfg: RunConfig, rt: rtm.Runtime) -> None:
        self.cfg, self.rt = cfg, rt
        self.dcfg = from_dict(DiffusionConfig, {k: v for k, v in cfg.task.items() if k != "kind"}, "task")
        self.ema: EMA | None = None

    # --- data ------------------------------------------------------------------------------------
    def setup(self, out: Path, resume_meta: dict[str, Any] | None) -> None:
        from ...diffusion.schedules import training_sigmas
        from ...models.unet import UNetConfig
        from .image_data import image_model_fields, load_image_splits

        cfg = self.cfg
        self.train_set, self.val_set = load_image_splits(cfg, "diffusion", self.rt.is_main)
        self.fields = image_model_fields(cfg, self.train_set, "unet", UNetConfig, "diffusion", resume_meta)
        self.sigmas = training_sigmas(self.dcfg.schedule, self.dcfg.timesteps)
        self.rng = torch.Generator().manual_seed(cfg.train.seed)
        self.images = self.train_set.to_model_range()  # (N, C, H, W) float32 in [-1, 1]
        self.labels = self.train_set.labels

    def next_batch(self, rank: int, world_size: int) -> Batch:
        """Images, labels (some dropped to the null class), noise levels and noise: the whole global batch
        is drawn from the one generator on every process, then each takes its slice."""
        b = self.cfg.train.batch_size
        g = self.rng
        idx = torch.randint(len(self.images), (b,), generator=g)
        labels = self.labels[idx].clone()
        if self.fields["num_classes"]:
            drop = torch.rand(b, generator=g) < self.dcfg.p_uncond
            labels[drop] = self.fields["num_classes"]
        else:
            labels.zero_()
        sigma = self.sigmas[torch.randint(len(self.sigmas), (b,), generator=g)]
        noise = torch.randn(self.images[idx].shape, generator=g)
        per = b // world_size
        part = slice(rank * per, (rank + 1) * per)
        return self.images[idx][part], labels[part], sigma[part], noise[part]

    def items_per_step(self) -> int:
        return self.cfg.train.batch_size

    # --- model ---------------------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        from ...models import build_model

        return build_model("unet", self.fields)

    def optimizers(self, model: nn.Module, device: torch.device) -> list[torch.optim.Optimizer]:
        from ..optim import make_optimizers

        self.ema = EMA(model, self.dcfg.ema_decay)  # here: the model is on its device by now
        return make_optimizers(model, self.cfg.train, device)

    def _loss(self, model: nn.Module, batch: Batch) -> Tensor:
        from ...diffusion.precondition import NetworkDenoiser

        x0, labels, sigma, noise = batch
        cond = labels if self.fields["num_classes"] else None
        return NetworkDenoiser(model, self.dcfg.prediction).loss(x0, sigma, noise, cond)

    def phases(self) -> list[Phase]:
        return [Phase((0,), self._loss)]

    def after_step(self, model: nn.Module) -> None:
        self.ema.update(model)

    # --- evaluation ------------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """The loss on held-out images with the same noise every time (a fixed generator), for the live
        weights and for the EMA weights sampling will use."""
        tc, rt = self.cfg.train, self.rt
        g = torch.Generator().manual_seed(tc.seed + 1)
        images, labels = self.val_set.to_model_range(), self.val_set.labels
        batches = []
        for _ in range(tc.eval_steps):
            idx = torch.randint(len(images), (tc.batch_size,), generator=g)
            sigma = self.sigmas[torch.randint(len(self.sigmas), (tc.batch_size,), generator=g)]
            noise = torch.randn(images[idx].shape, generator=g)
            batches.append(tuple(t.to(rt.device) for t in (images[idx], labels[idx], sigma, noise)))
        was_training = model.training
        model.eval()
        out = {"val_loss": self._mean_loss(model, batches)}
        live = {n: p.detach().clone() for n, p in model.named_parameters()}
        self._load_ema(model)
        out["val_loss_ema"] = self._mean_loss(model, batches)
        self.samples = self._sample_grid(model)
        for n, p in model.named_parameters():
            p.copy_(live[n])
        model.train(was_training)
        return out

    def _mean_loss(self, model: nn.Module, batches: list[Batch]) -> float:
        total = torch.zeros((), device=self.rt.device)
        for batch in batches:
            with self.rt.autocast():
                total += self._loss(model, batch)
        return float(rtm.mean_across(total / len(batches), self.rt))

    def _load_ema(self, model: nn.Module) -> None:
        for n, p in model.named_parameters():
            p.copy_(self.ema.shadow[n])

    def _sample_grid(self, model: nn.Module) -> bytes | None:
        """A PNG grid (8 samples of each class, or 64 unconditional ones) from the EMA weights."""
        if not self.rt.is_main:
            return None
        from ...codecs.image import image_grid, png_bytes, to_uint8
        from ...diffusion.precondition import NetworkDenoiser
        from ...diffusion.schedules import sampling_sigmas
        from ...sampling.diffusion import generate_samples

        k, d = self.fields["num_classes"], self.dcfg
        labels = torch.arange(k).repeat_interleave(8) if k else None
        shape = (self.fields["channels"], self.fields["image_size"], self.fields["image_size"])
        sigmas = sampling_sigmas(self.sigmas, d.sample_steps, d.sample_sampler)
        images = generate_samples(NetworkDenoiser(model, d.prediction), sigmas, 8 * k if k else 64, shape, labels,
                                  k, d.sample_sampler, d.sample_guidance, device=self.rt.device)
        return png_bytes(image_grid(to_uint8(images.cpu()), nrow=8), scale=2)

    def checkpoint_files(self) -> dict[str, bytes]:
        """Files saved beside each checkpoint's weights: the sample grid of the last evaluation."""
        grid = getattr(self, "samples", None)
        return {"samples.png": grid} if grid else {}

    # --- resume and loading -----------------------------------------------------------------------------------
    def state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        return {"rng.data": self.rng.get_state(), **self.ema.state()}, {}

    def load_state(self, tensors: dict[str, Tensor], info: dict[str, Any]) -> None:
        self.rng.set_state(tensors["rng.data"])
        self.ema.load_state(tensors)

    def meta(self) -> dict[str, Any]:
        from ...data.images import class_descriptions, pipeline_of

        d = self.dcfg
        return {"model": {"kind": "unet", **self.fields}, "pipeline": pipeline_of(self.cfg.data.corpus),
                "task": self.kind,
                "diffusion": {"prediction": d.prediction, "schedule": d.schedule, "timesteps": d.timesteps},
                "classes": list(self.train_set.classes),
                "class_descriptions": class_descriptions(self.train_set.classes),
                "data": self.cfg.data.corpus,
                "sampling_weights": "ema"}
