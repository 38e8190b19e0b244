"""GAN training: a generator learns to fool a discriminator that learns to tell its images from real ones
(``[task] kind = "gan"``; Goodfellow et al. 2014), on ``genforge.models.gan``.

One optimizer step is ``d_steps`` discriminator phases, then one generator phase (``fit()`` runs,
clips and NaN-guards each phase on its own). Losses: the *hinge* loss (Lim & Ye 2017, "Geometric
GAN"; used with spectral norm by Miyato et al. 2018), ``L_D = E[relu(1 - D(x))] + E[relu(1 + D(G(z)))]``,
``L_G = -E[D(G(z))]``; or *WGAN-GP* (Gulrajani et al. 2017, "Improved Training of Wasserstein GANs"),
``L_D = E[D(G(z))] - E[D(x)] + lambda E[(|grad D(x_hat)| - 1)^2]`` on random interpolates x_hat of real
and fake images, with the same ``L_G``. A discriminator phase generates its fakes without a graph (so
it cannot train G) and labels them with the real images' classes (so WGAN-GP interpolates within a
class); the generator phase draws fresh noise and uniformly random classes, and runs D with its
weights frozen, so the phase computes no gradient for D at all (``fit()`` also clears every
optimizer's gradients after each phase, and the phase steps only the generator's Adam).

Every random draw of a step (real images, z, classes, interpolation weights) comes from one seeded
generator in ``next_batch`` and is checkpointed, so resume is exact, ``d_steps > 1`` included: a
batch carries d_steps real batches and d_steps + 1 noise batches along its second dimension.

Sampling uses an exponential moving average of the generator's weights (Yazici et al. 2019, "The
Unusual Effectiveness of Averaging in GAN Training"); BatchNorm statistics are the live generator's,
copied at sampling time as StyleGAN2-ADA does (Karras et al. 2020). A mode-collapse monitor
measures the EMA generator's sample diversity against the real images' (see ``_diversity``).

NOTE: GAN losses are not a quality measure: the discriminator's loss says how the two players stand
against each other, not how good the images are; a falling ``val_loss`` means D is winning. Look at
the sample grid (``samples.png`` in each checkpoint), and at ``diversity``.
"""
from __future__ import annotations

import copy
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...config import RunConfig, from_dict
from ...errors import ConfigError, GenforgeError
from .. import runtime as rtm
from ..ema import EMA
from . import Batch, Phase

LOSSES = ("hinge", "wgan-gp")
PAPER_BETAS = {"hinge": (0.5, 0.999), "wgan-gp": (0.0, 0.9)}  # Miyato et al. 2018 (n_dis=1); Gulrajani et al.
DIVERSITY_SAMPLES = 16  # fake images per class for the diversity measure
DIVERSITY_REAL = 64  # at most this many real images per class for its normaliser
EVAL_SEED, SAMPLE_SEED = 1, 2  # offsets from train.seed for the held-out batches and the fixed sample noise


@dataclass(frozen=True)
class GANTaskConfig:
    """The ``[task]`` section of a GAN recipe (besides ``kind``)."""

    loss: str = "hinge"  # "hinge" (Lim & Ye 2017) or "wgan-gp" (Gulrajani et al. 2017)
    gp_weight: float = 10.0  # lambda, the WGAN-GP gradient penalty's weight (the paper's 10)
    d_steps: int = 1  # discriminator updates per generator update (WGAN-GP's paper uses 5)
    d_lr_mult: float = 1.0  # discriminator lr = train.lr x this (two time-scale updates, Heusel et al. 2017)
    adam_betas: tuple[float, ...] = ()  # Adam (beta1, beta2); empty = the loss's paper: hinge (0.5, 0.999),
    #                                     wgan-gp (0.0, 0.9). train.beta1/beta2/weight_decay are not used.
    ema_decay: float = 0.999  # generator weights average kept for sampling (warmed up: see after_step)
    truncation: float = 0.0  # the sample grid's truncation threshold (Brock et al. 2019); 0 = plain N(0, I)
    collapse_check_every: int = 500  # steps between mode-collapse checks; 0 = never (evaluations still log it)
    collapse_min_diversity: float = 0.2  # below this sample diversity (1 = as varied as real images): warn
    stop_on_collapse: bool = False  # and stop the run (the last checkpoint is kept)

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ConfigError(f"task.loss={self.loss!r} is invalid: allowed {', '.join(LOSSES)}")
        checks = (("gp_weight", 0.0 <= self.gp_weight <= 1000.0, "0 .. 1000"),
                  ("d_steps", 1 <= self.d_steps <= 10, "an integer 1 .. 10"),
                  ("d_lr_mult", 0.0 < self.d_lr_mult <= 100.0, "0 < d_lr_mult <= 100"),
                  ("ema_decay", 0.0 <= self.ema_decay < 1.0, "0 <= ema_decay < 1"),
                  ("truncation", self.truncation == 0.0 or 0.1 <= self.truncation <= 10.0, "0 (none) or 0.1 .. 10"),
                  ("collapse_check_every", self.collapse_check_every >= 0, "an integer >= 0 (0 = never)"),
                  ("collapse_min_diversity", 0.0 <= self.collapse_min_diversity <= 10.0, "0 .. 10"))
        for name, ok, allowed in checks:
            if not ok or (isinstance(v := getattr(self, name), float) and not math.isfinite(v)):
                raise ConfigError(f"task.{name}={getattr(self, name)!r} is invalid: allowed {allowed}")
        if self.adam_betas and (len(self.adam_betas) != 2 or not all(0.0 <= b < 1.0 for b in self.adam_betas)):
            raise ConfigError(f"task.adam_betas={list(self.adam_betas)!r} is invalid: allowed [] (the loss's "
                              "paper) or [beta1, beta2] with 0 <= beta < 1")


# --- the losses, as pure functions of logits (tests check them against the formulas) ---------------
def d_hinge_loss(real: Tensor, fake: Tensor) -> Tensor:
    """Discriminator hinge loss: mean(relu(1 - D(x))) + mean(relu(1 + D(G(z))))."""
    return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()


def d_wasserstein_loss(real: Tensor, fake: Tensor) -> Tensor:
    """The critic's loss without its penalty: mean(D(G(z))) - mean(D(x)) (minus a Wasserstein-1 estimate)."""
    return fake.mean() - real.mean()


def g_loss(fake: Tensor) -> Tensor:
    """The generator's loss for both objectives: -mean(D(G(z)))."""
    return -fake.mean()


def gradient_penalty(critic: nn.Module, real: Tensor, fake: Tensor, labels: Tensor | None, eps: Tensor) -> Tensor:
    """WGAN-GP's two-sided penalty (Gulrajani et al. 2017, eq. 3): mean((|grad_x D(x_hat)|_2 - 1)^2) at
    x_hat = eps * real + (1 - eps) * fake, eps (B,) in [0, 1]; differentiable (create_graph) so the
    critic's update follows it."""
    e = eps.view(-1, *([1] * (real.dim() - 1))).to(real.dtype)
    x_hat = (e * real.detach() + (1 - e) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat, labels).float().sum(), x_hat, create_graph=True)
    return (grad.float().flatten(1).norm(dim=1) - 1.0).pow(2).mean()


class _Adam(torch.optim.Adam):
    """Adam whose parameter groups may carry ``lr_mult``: ``fit()`` sets every group's ``lr`` to the
    schedule's each step (``train.optim.set_lr``), and this applies ``lr * lr_mult`` for the step."""

    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        base = [g["lr"] for g in self.param_groups]
        for g in self.param_groups:
            g["lr"] = g["lr"] * g.get("lr_mult", 1.0)
        try:
            return super().step(closure)
        finally:
            for g, lr in zip(self.param_groups, base):
                g["lr"] = lr


def _mean_pairwise_distance(x: Tensor) -> float:
    """Mean L2 distance between the distinct pairs of rows of ``x`` (n, D), n >= 2."""
    n = x.shape[0]
    d = torch.cdist(x.double(), x.double(), compute_mode="donot_use_mm_for_euclid_dist")
    return float(d.sum() / (n * (n - 1)))


class GANTask:
    kind = "gan"
    throughput_unit = "images"

    def __init__(self, cfg: RunConfig, rt: rtm.Runtime) -> None:
        self.cfg, self.rt = cfg, rt
        self.gcfg = from_dict(GANTaskConfig, {k: v for k, v in cfg.task.items() if k != "kind"}, "task")
        self.ema: EMA | None = None
        self.step = 0

    # --- data ------------------------------------------------------------------------------------
    def setup(self, out: Path, resume_meta: dict[str, Any] | None) -> None:
        from ...models.gan import GANConfig
        from .image_data import image_model_fields, load_image_splits

        cfg, tc = self.cfg, self.cfg.train
        if self.rt.world_size > 1:
            raise ConfigError(f"the GAN task trains in one process so far ({self.rt.world_size} were started): "
                              "run it without torchrun")
        if tc.optimizer != "adamw":
            raise ConfigError(f"train.optimizer={tc.optimizer!r} does not apply to the GAN task (it uses Adam, "
                              "see task.adam_betas): remove it")
        self.train_set, self.val_set = load_image_splits(cfg, "GAN", self.rt.is_main)
        self.fields = image_model_fields(cfg, self.train_set, "gan", GANConfig, "GAN", resume_meta)
        self.rng = torch.Generator().manual_seed(tc.seed)
        self.images = self.train_set.to_model_range()  # (N, C, H, W) float32 in [-1, 1]
        self.labels = self.train_set.labels if self.fields["num_classes"] else torch.zeros_like(self.train_set.labels)
        g = torch.Generator().manual_seed(tc.seed + EVAL_SEED)  # fixed held-out reals and fake noise
        idx = torch.randint(len(self.val_set), (tc.eval_steps * tc.batch_size,), generator=g)
        self.eval_reals = self.val_set.to_model_range()[idx]
        self.eval_labels = self.val_set.labels[idx] if self.fields["num_classes"] else torch.zeros_like(idx)
        self.eval_z = torch.randn(len(idx), self.fields["z_dim"], generator=g)
        self.real_diversity = self._real_diversity()

    def _real_diversity(self) -> dict[int, float]:
        """Per class (one "class" 0 for an unconditional model): the mean pairwise L2 distance of up to
        DIVERSITY_REAL training images, evenly spaced through the class (no random state involved)."""
        out = {}
        for c in self.labels.unique().tolist():
            members = (self.labels == c).nonzero().flatten()
            if len(members) >= 2:
                take = members[torch.linspace(0, len(members) - 1, min(len(members), DIVERSITY_REAL)).long()]
                if (dist := _mean_pairwise_distance(self.images[take].flatten(1))) > 0:
                    out[c] = dist
        return out

    def next_batch(self, rank: int, world_size: int) -> Batch:
        """(real images (B, d_steps, C, H, W), their labels (B, d_steps), noise (B, d_steps + 1, z_dim),
        the generator phase's labels (B,), interpolation weights (B, d_steps)), all from the one generator."""
        b, d, k = self.cfg.train.batch_size, self.gcfg.d_steps, self.fields["num_classes"]
        g = self.rng
        idx = torch.randint(len(self.images), (b * d,), generator=g)
        reals = self.images[idx].view(b, d, *self.images.shape[1:])
        labels = self.labels[idx].view(b, d)
        z = torch.randn(b, d + 1, self.fields["z_dim"], generator=g)
        fake_labels = torch.randint(k, (b,), generator=g) if k else torch.zeros(b, dtype=torch.long)
        eps = torch.rand(b, d, generator=g)
        per = b // world_size
        part = slice(rank * per, (rank + 1) * per)
        return reals[part], labels[part], z[part], fake_labels[part], eps[part]

    def items_per_step(self) -> int:
        return self.cfg.train.batch_size * self.gcfg.d_steps  # real images the discriminator sees

    # --- model ---------------------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        from ...models import build_model

        return build_model("gan", self.fields)

    def optimizers(self, model: nn.Module, device: torch.device) -> list[torch.optim.Optimizer]:
        """[discriminator Adam, generator Adam], no weight decay (as the GAN papers train)."""
        t, lr = self.gcfg, self.cfg.train.lr
        self.model = model
        self.ema = EMA(model.generator, t.ema_decay)  # here: the model is on its device by now
        self.g_ema = copy.deepcopy(model.generator).requires_grad_(False).eval()  # holds the EMA for sampling
        betas = tuple(t.adam_betas) or PAPER_BETAS[t.loss]
        d_opt = _Adam([{"params": list(model.discriminator.parameters()), "lr_mult": t.d_lr_mult}], lr=lr,
                      betas=betas, fused=True)
        return [d_opt, _Adam(model.generator.parameters(), lr=lr, betas=betas, fused=True)]

    def _d_phase(self, i: int) -> Callable[[nn.Module, Batch], Tensor]:
        def loss(model: nn.Module, batch: Batch) -> Tensor:
            reals, labels, z, _, eps = batch
            x, y = reals[:, i], labels[:, i]
            with torch.no_grad():  # no graph: this phase cannot train the generator
                fake = model.generator(z[:, i], y)
            return self.d_loss(model.discriminator, x, fake, y, eps[:, i])
        return loss

    def d_loss(self, critic: nn.Module, real: Tensor, fake: Tensor, labels: Tensor, eps: Tensor) -> Tensor:
        """The discriminator's loss of one batch: real and fake in one forward (one power iteration)."""
        logits = critic(torch.cat([real, fake]), torch.cat([labels, labels])).float()
        r, f = logits.chunk(2)
        if self.gcfg.loss == "hinge":
            return d_hinge_loss(r, f)
        return d_wasserstein_loss(r, f) + self.gcfg.gp_weight * gradient_penalty(critic, real, fake, labels, eps)

    def _g_phase(self, model: nn.Module, batch: Batch) -> Tensor:
        _, _, z, labels, _ = batch
        fake = model.generator(z[:, -1], labels)
        critic = model.discriminator
        critic.requires_grad_(False)  # the graph then carries no gradient to D's weights (only through D)
        try:
            logits = critic(fake, labels)
        finally:
            critic.requires_grad_(True)
        return g_loss(logits.float())

    def phases(self) -> list[Phase]:
        return [Phase((0,), self._d_phase(i)) for i in range(self.gcfg.d_steps)] + [Phase((1,), self._g_phase)]

    def after_step(self, model: nn.Module) -> None:
        """The EMA update, its decay warmed up as min(ema_decay, (1 + t) / (10 + t)) at step t (TensorFlow's
        ExponentialMovingAverage with num_updates), so early samples and diversity checks show the recent
        generator rather than its initial weights; then the collapse check when one is due."""
        self.step += 1
        self.ema.decay = min(self.gcfg.ema_decay, (1 + self.step) / (10 + self.step))
        self.ema.update(model.generator)
        every = self.gcfg.collapse_check_every
        if every and self.step % every == 0:
            self.check_collapse(model)

    # --- evaluation and the mode-collapse monitor ------------------------------------------------------
    def ema_generator(self, model: nn.Module) -> nn.Module:
        """The generator with the EMA weights and the live generator's BatchNorm statistics, in eval mode."""
        with torch.no_grad():
            for n, p in self.g_ema.named_parameters():
                p.copy_(self.ema.shadow[n])
            for (_, b), live in zip(self.g_ema.named_buffers(), model.generator.buffers()):
                b.copy_(live)
        return self.g_ema.eval()

    @torch.no_grad()
    def _d_metrics(self, model: nn.Module, n: int) -> dict[str, float]:
        """The discriminator on the first ``n`` fixed held-out images against as many fixed fakes of the
        live generator (the same classes): its loss (no gradient penalty), mean scores and accuracy
        (threshold 0 for the hinge loss, the midpoint of the two means for a WGAN critic, whose scores
        only mean something relative to each other)."""
        dev, bs = self.rt.device, self.cfg.train.batch_size
        real_out, fake_out = [], []
        for s in range(0, n, bs):
            x, y, z = (t[s:min(s + bs, n)].to(dev) for t in (self.eval_reals, self.eval_labels, self.eval_z))
            with self.rt.autocast():
                real_out.append(model.discriminator(x, y).float())
                fake_out.append(model.discriminator(model.generator(z, y), y).float())
        r, f = torch.cat(real_out), torch.cat(fake_out)
        hinge = self.gcfg.loss == "hinge"
        loss = d_hinge_loss(r, f) if hinge else d_wasserstein_loss(r, f)
        t = 0.0 if hinge else float(r.mean() + f.mean()) / 2
        acc = float(((r > t).sum() + (f < t).sum()) / (len(r) + len(f)))
        return {"val_loss": float(loss), "d_real": float(r.mean()), "d_fake": float(f.mean()), "d_accuracy": acc}

    def _diversity(self, gen: nn.Module) -> float:
        """Sample diversity: per class, the mean pairwise L2 distance of DIVERSITY_SAMPLES samples from
        fixed noise (no truncation), divided by the same statistic of real images of the class, averaged
        over the classes. About 1 when samples vary as much as real images; 0 when every sample of a
        class is the same image (mode collapse: the generator ignores z)."""
        from ...sampling.gan import generate_gan_samples

        k, n = self.fields["num_classes"], DIVERSITY_SAMPLES
        labels = torch.arange(k).repeat_interleave(n) if k else None
        x = generate_gan_samples(gen, n * max(k, 1), self.fields["z_dim"], labels, None,
                                 self.cfg.train.seed + SAMPLE_SEED, self.rt.device).cpu().view(max(k, 1), n, -1)
        ratios = [_mean_pairwise_distance(x[c]) / real for c, real in self.real_diversity.items()]
        return sum(ratios) / len(ratios) if ratios else float("nan")

    def monitor(self, model: nn.Module, n: int) -> dict[str, float]:
        """D metrics on ``n`` held-out images and the EMA generator's diversity; changes no state."""
        was_training = model.training
        model.eval()  # BatchNorm uses (and keeps) its running statistics; no spectral-norm power iteration
        try:
            out = self._d_metrics(model, n)
            out["diversity"] = self._diversity(self.ema_generator(model))
        finally:
            model.train(was_training)
        return out

    def check_collapse(self, model: nn.Module) -> dict[str, float]:
        """Warn (and with ``stop_on_collapse`` stop) when the sample diversity falls below the threshold."""
        m = self.monitor(model, self.cfg.train.batch_size)
        limit = self.gcfg.collapse_min_diversity
        if m["diversity"] < limit:
            what = (f"possible mode collapse at step {self.step}: sample diversity {m['diversity']:.3f} < "
                    f"task.collapse_min_diversity={limit} (discriminator accuracy {m['d_accuracy']:.2f})")
            if self.gcfg.stop_on_collapse:
                raise GenforgeError(f"stopped: {what}; the last checkpoint is kept (set task.stop_on_collapse = "
                                    "false to train on)")
            if self.rt.is_main:
                print(f"genforge: warning: {what}", file=sys.stderr, flush=True)
        return m

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """``val_loss``: the discriminator's loss on held-out real images against fixed fakes (the same
        every time). GAN losses are no quality measure (see the module docstring): ``diversity`` and the
        sample grid, made here from the EMA generator, say more."""
        out = self.monitor(model, len(self.eval_reals))
        self.samples = self._sample_grid(self.ema_generator(model))
        return out

    def _sample_grid(self, gen: nn.Module) -> bytes | None:
        """A PNG grid (8 samples of each class, one class a row, or 64 unconditional ones) from fixed noise."""
        if not self.rt.is_main:
            return None
        from ...codecs.image import image_grid, png_bytes, to_uint8
        from ...sampling.gan import generate_gan_samples

        k = self.fields["num_classes"]
        labels = torch.arange(k).repeat_interleave(8) if k else None
        images = generate_gan_samples(gen, 8 * k if k else 64, self.fields["z_dim"], labels,
                                      self.gcfg.truncation or None, self.cfg.train.seed + SAMPLE_SEED, self.rt.device)
        return png_bytes(image_grid(to_uint8(images.cpu()), nrow=8), scale=2)

    def checkpoint_files(self) -> dict[str, bytes]:
        """Files saved beside each checkpoint's weights: the sample grid of the last evaluation."""
        grid = getattr(self, "samples", None)
        return {"samples.png": grid} if grid else {}

    # --- resume and loading -----------------------------------------------------------------------------------
    def state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """The data generator, and ``ema.*`` tensors covering every key of the model's weights, as export
        and the image pipeline want: ``ema.generator.*`` = the generator's averaged weights (with the live
        BatchNorm statistics), ``ema.discriminator.*`` = the live discriminator (not averaged: sampling
        never uses it). So an exported model is the EMA generator plus the live discriminator."""
        model = self.model
        tensors = {"rng.data": self.rng.get_state(), **self.ema.state("ema.generator.")}
        tensors.update({f"ema.generator.{n}": b.detach().clone() for n, b in model.generator.named_buffers()})
        tensors.update({f"ema.discriminator.{n}": t.detach().clone()
                        for n, t in model.discriminator.state_dict().items()})
        return tensors, {"gan_step": self.step}

    def load_state(self, tensors: dict[str, Tensor], info: dict[str, Any]) -> None:
        self.rng.set_state(tensors["rng.data"])
        self.ema.load_state(tensors, "ema.generator.")
        self.step = int(info.get("gan_step", 0))

    def meta(self) -> dict[str, Any]:
        from ...data.images import class_descriptions

        t = self.gcfg
        return {"model": {"kind": "gan", **self.fields}, "pipeline": "image", "task": self.kind,
                "classes": list(self.train_set.classes),
                "class_descriptions": class_descriptions(self.train_set.classes),
                "data": self.cfg.data.corpus, "sampling_weights": "ema",
                "gan": {"loss": t.loss, "truncation": t.truncation or None}}
