"""A small class-conditional GAN for small images: a DCGAN-style generator and a projection discriminator.

Generator (Radford et al. 2016, "DCGAN"): z -> a linear projection to a (4g, s/4, s/4) map -> two
stages of 2x nearest upsampling + 3x3 convolution (Odena et al. 2016, "Deconvolution and Checkerboard
Artifacts": no transposed convolutions, so no checkerboard) halving the width as the resolution
doubles -> a 3x3 convolution to the image channels -> tanh, so images land in [-1, 1] as the data does.
BatchNorm and ReLU after every hidden layer, as DCGAN prescribes.

Class conditioning in the generator is *conditional BatchNorm* (de Vries et al. 2017; Dumoulin et al.
2017): each class has its own BatchNorm scale and shift. We chose it over concatenating a class
embedding to z because the class then acts at every resolution rather than only through the first
layer, and it is what the projection-discriminator paper pairs with its discriminator (Miyato &
Koyama 2018, section 5). It costs 2 x width numbers per class and layer.

Discriminator: the "standard CNN" of spectral-normalisation GANs (Miyato et al. 2018, table 3),
shortened for small images: 3x3 and 4x4-stride-2 convolutions with LeakyReLU(0.1), widths d, d, 2d,
2d, 4d, a global *sum* pooling to h, then the *projection* output (Miyato & Koyama 2018, eq. 3):
``D(x, y) = w . h + embed(y) . h``: the class enters as an inner product with the features instead
of being concatenated to the input, which the paper shows gives better class-conditional samples.
Spectral normalisation (Miyato et al. 2018) divides every discriminator weight matrix, the class
embedding included, by its largest singular value (one power iteration per training forward),
keeping D roughly 1-Lipschitz.

Weights start from N(0, 0.02) (DCGAN, section 4); BatchNorm scales from N(1, 0.02). Both halves
live in one ``GAN`` module (``.generator``, ``.discriminator``) because ``fit()`` trains one module;
``GAN(z, labels)`` is the generator. The weights file also holds BatchNorm running statistics and
spectral-norm power-iteration vectors, so ``num_parameters`` counts those too (see there).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

INIT_STD = 0.02  # DCGAN's N(0, 0.02)


@dataclass(frozen=True)
class GANConfig:
    image_size: int = 28  # height = width of the images; must divide by 4 (two 2x stages)
    channels: int = 1  # image channels (1 grey, 3 RGB)
    z_dim: int = 64  # latent noise dimensions
    g_channels: int = 32  # generator widths 4g, 2g, g at 1/4, 1/2 and full resolution
    d_channels: int = 64  # discriminator widths d, d, 2d, 2d, 4d
    num_classes: int = 10  # class-conditional (conditional BatchNorm in G, projection in D); 0 = unconditional
    spectral_norm: bool = True  # spectral-normalise every discriminator layer (Miyato et al. 2018)

    def __post_init__(self) -> None:
        from ..errors import ConfigError

        for name in ("image_size", "channels", "z_dim", "g_channels", "d_channels"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"model.{name}={v!r} is invalid: allowed an integer >= 1")
        if self.image_size % 4 or not 8 <= self.image_size <= 256:
            raise ConfigError(f"model.image_size={self.image_size} is invalid: allowed a multiple of 4 in 8 .. 256")
        if self.channels not in (1, 3):
            raise ConfigError(f"model.channels={self.channels} is invalid: allowed 1 (grey) or 3 (RGB)")
        if not isinstance(self.num_classes, int) or isinstance(self.num_classes, bool) or self.num_classes < 0:
            raise ConfigError(f"model.num_classes={self.num_classes!r} is invalid: allowed an integer >= 0")
        if not isinstance(self.spectral_norm, bool):
            raise ConfigError(f"model.spectral_norm={self.spectral_norm!r} is invalid: allowed true or false")

    def num_parameters(self) -> int:
        """Numbers the weights file of this config holds, counted from the config alone (no tensors are
        made): checkpoint loading compares it with the file before building anything. Besides the
        trainable parameters that is each BatchNorm's running mean, variance and batch count and each
        spectral norm's power-iteration vectors u and v (``num_buffers``), which the file must carry
        for sampling (BatchNorm) and for exact resume (spectral norm)."""
        return self.num_trainable() + self.num_buffers()

    def num_trainable(self) -> int:
        """Trainable parameters only (what ``fit`` records as ``parameters``)."""
        k, g, d, c, s0 = self.num_classes, self.g_channels, self.d_channels, self.channels, self.image_size // 4

        def norm(width: int) -> int:  # conditional BatchNorm: (scale, shift) per class; else one affine pair
            return k * 2 * width if k else 2 * width

        gen = self.z_dim * 4 * g * s0 * s0 + norm(4 * g)  # projection (no bias: BatchNorm follows)
        gen += 4 * g * 2 * g * 9 + norm(2 * g) + 2 * g * g * 9 + norm(g)
        gen += g * c * 9 + c
        disc = sum(i * o * kk * kk + o for i, o, kk in _d_layers(c, d)) + (4 * d + 1) + k * 4 * d
        return gen + disc

    def num_buffers(self) -> int:
        """BatchNorm statistics (2 x width + a batch count per norm) and spectral-norm vectors (u: rows,
        v: columns of each normalised matrix)."""
        g, d, c, k = self.g_channels, self.d_channels, self.channels, self.num_classes
        total = sum(2 * w + 1 for w in (4 * g, 2 * g, g))
        if self.spectral_norm:
            total += sum(o + i * kk * kk for i, o, kk in _d_layers(c, d)) + (1 + 4 * d) + ((k + 4 * d) if k else 0)
        return total


def _d_layers(channels: int, d: int) -> list[tuple[int, int, int]]:
    """(in, out, kernel) of the discriminator's convolutions; kernel 4 ones have stride 2."""
    return [(channels, d, 3), (d, d, 4), (d, 2 * d, 3), (2 * d, 2 * d, 4), (2 * d, 4 * d, 3)]


class ConditionalBatchNorm(nn.Module):
    """BatchNorm whose scale and shift are looked up per class (plain affine BatchNorm when unconditional)."""

    def __init__(self, width: int, num_classes: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(width, affine=not num_classes)
        self.embed = nn.Embedding(num_classes, 2 * width) if num_classes else None

    def forward(self, x: Tensor, labels: Tensor | None) -> Tensor:
        h = self.bn(x)
        if self.embed is None:
            return h
        scale, shift = self.embed(labels)[:, :, None, None].chunk(2, dim=1)
        return h * scale + shift


class Generator(nn.Module):
    """``G(z, labels) -> images`` (B, C, H, W) in [-1, 1]; labels (B,) int, ignored when unconditional."""

    def __init__(self, cfg: GANConfig) -> None:
        super().__init__()
        g, k = cfg.g_channels, cfg.num_classes
        self.s0, self.width0 = cfg.image_size // 4, 4 * g
        self.fc = nn.Linear(cfg.z_dim, 4 * g * self.s0 * self.s0, bias=False)
        self.norm0 = ConditionalBatchNorm(4 * g, k)
        self.conv1 = nn.Conv2d(4 * g, 2 * g, 3, padding=1, bias=False)
        self.norm1 = ConditionalBatchNorm(2 * g, k)
        self.conv2 = nn.Conv2d(2 * g, g, 3, padding=1, bias=False)
        self.norm2 = ConditionalBatchNorm(g, k)
        self.out = nn.Conv2d(g, cfg.channels, 3, padding=1)

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        h = self.fc(z).view(z.shape[0], self.width0, self.s0, self.s0)
        h = F.relu(self.norm0(h, labels))
        h = F.relu(self.norm1(self.conv1(F.interpolate(h, scale_factor=2.0, mode="nearest")), labels))
        h = F.relu(self.norm2(self.conv2(F.interpolate(h, scale_factor=2.0, mode="nearest")), labels))
        return torch.tanh(self.out(h))


class Discriminator(nn.Module):
    """``D(x, labels) -> (B,)`` real-vs-fake logits, with the projection term when class-conditional."""

    def __init__(self, cfg: GANConfig, init: bool) -> None:
        super().__init__()
        d, k = cfg.d_channels, cfg.num_classes
        self.convs = nn.ModuleList(nn.Conv2d(i, o, kk, stride=2 if kk == 4 else 1, padding=1)
                                   for i, o, kk in _d_layers(cfg.channels, d))
        self.linear = nn.Linear(4 * d, 1)
        self.embed = nn.Embedding(k, 4 * d) if k else None
        if init:  # before spectral norm wraps the weights, so its power iteration starts from these
            for m in self.modules():
                if isinstance(m, nn.Conv2d | nn.Linear | nn.Embedding):
                    nn.init.normal_(m.weight, 0.0, INIT_STD)
                if isinstance(m, nn.Conv2d | nn.Linear):
                    nn.init.zeros_(m.bias)
        if cfg.spectral_norm:
            from torch.nn.utils.parametrizations import spectral_norm

            for m in [*self.convs, self.linear, *([self.embed] if self.embed is not None else [])]:
                spectral_norm(m)

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        h = x
        for conv in self.convs:
            h = F.leaky_relu(conv(h), 0.1)
        h = h.sum(dim=(2, 3))  # global sum pooling (Miyato et al. 2018)
        out = self.linear(h).squeeze(1)
        if self.embed is not None:
            out = out + (self.embed(labels) * h).sum(dim=1)  # the projection term
        return out


class GAN(nn.Module):
    """Generator and discriminator in one module; ``GAN(z, labels)`` generates."""

    config_class = GANConfig

    def __init__(self, cfg: GANConfig, init: bool = True) -> None:
        super().__init__()
        self.config = cfg
        self.generator = Generator(cfg)
        if init:
            for m in self.generator.modules():
                if isinstance(m, nn.Conv2d | nn.Linear):
                    nn.init.normal_(m.weight, 0.0, INIT_STD)
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
                elif isinstance(m, nn.BatchNorm2d) and m.affine:
                    nn.init.normal_(m.weight, 1.0, INIT_STD)
                    nn.init.zeros_(m.bias)
                elif isinstance(m, ConditionalBatchNorm) and m.embed is not None:
                    width = m.embed.embedding_dim // 2
                    nn.init.normal_(m.embed.weight[:, :width], 1.0, INIT_STD)
                    nn.init.zeros_(m.embed.weight[:, width:])
        self.discriminator = Discriminator(cfg, init)

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.generator(z, labels)

    def num_parameters(self) -> int:
        """Numbers in the weights file (parameters and buffers), as ``GANConfig.num_parameters`` counts."""
        return sum(t.numel() for t in self.state_dict().values())
