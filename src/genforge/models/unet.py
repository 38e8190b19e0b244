"""A small class-conditional UNet denoiser for diffusion on small images (28x28 Fashion-MNIST and up).

The DDPM UNet (Ho et al. 2020, appendix B) in the form of "Improved DDPM" (Nichol & Dhariwal 2021):
residual blocks with GroupNorm and SiLU, the noise level and class added to every block through a
shared embedding, self-attention at the low resolutions only, skip connections from each down level
to its up level. The class embedding has one extra row, the *null class* (id ``num_classes``), which
training swaps in for a share of the labels so one network is both conditional and unconditional:
classifier-free guidance (Ho & Salimans 2022) mixes the two at sampling.

Tensors in, tensors out: ``net(x_t, c_noise, labels) -> prediction`` with x_t (B, C, H, W), c_noise (B,)
(the preconditioned noise level, ``genforge.diffusion.precondition``) and labels (B,) int or None
(= the null class). What the output means (eps or v) is the preconditioning's business.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class UNetConfig:
    image_size: int = 28  # height = width of the images; must divide by 2 ** (len(channel_mult) - 1)
    channels: int = 1  # image channels (1 grey, 3 RGB)
    base_channels: int = 32  # width of the first level; level i has base_channels * channel_mult[i]
    channel_mult: tuple[int, ...] = (1, 2, 2)  # one entry per resolution level (28 -> 14 -> 7)
    num_res_blocks: int = 2  # residual blocks per level on the way down (one more on the way up)
    attention_resolutions: tuple[int, ...] = (7,)  # image sizes with a self-attention layer after each block
    num_heads: int = 4  # attention heads
    num_classes: int = 10  # class-conditional with this many classes, plus the null class; 0 = unconditional
    dropout: float = 0.1  # inside residual blocks (training only)
    groups: int = 8  # GroupNorm groups; every level's width must divide by it

    def __post_init__(self) -> None:
        from ..errors import ConfigError

        for name in ("image_size", "channels", "base_channels", "num_res_blocks", "num_heads", "groups"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"model.{name}={v!r} is invalid: allowed an integer >= 1")
        if not self.channel_mult or any(not isinstance(m, int) or m < 1 for m in self.channel_mult):
            raise ConfigError(f"model.channel_mult={list(self.channel_mult)!r} is invalid: allowed a non-empty "
                              "list of integers >= 1")
        if self.image_size % 2 ** (len(self.channel_mult) - 1):
            raise ConfigError(f"model.image_size={self.image_size} must divide by 2**{len(self.channel_mult) - 1} "
                              f"for {len(self.channel_mult)} levels (model.channel_mult)")
        for m in self.channel_mult:
            if (self.base_channels * m) % self.groups or (self.base_channels * m) % self.num_heads:
                raise ConfigError(f"model.base_channels * channel_mult ({self.base_channels * m}) must divide by "
                                  f"model.groups={self.groups} and model.num_heads={self.num_heads}")
        if not isinstance(self.num_classes, int) or self.num_classes < 0:
            raise ConfigError(f"model.num_classes={self.num_classes!r} is invalid: allowed an integer >= 0")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model.dropout={self.dropout!r} is invalid: allowed 0 <= dropout < 1")

    def num_parameters(self) -> int:
        """Parameters the UNet of this config has, counted from the config alone (no tensors are made):
        checkpoint loading compares it with the weights file before building anything."""
        c0, emb = self.base_channels, 4 * self.base_channels

        def conv(i: int, o: int, k: int) -> int:
            return i * o * k * k + o

        def res(i: int, o: int) -> int:
            skip = conv(i, o, 1) if i != o else 0
            return 2 * i + conv(i, o, 3) + emb * 2 * o + 2 * o + 2 * o + conv(o, o, 3) + skip

        def attn(c: int) -> int:
            return 2 * c + conv(c, 3 * c, 1) + conv(c, c, 1)

        total = (c0 * emb + emb) + (emb * emb + emb) + ((self.num_classes + 1) * emb if self.num_classes else 0)
        total += conv(self.channels, c0, 3)
        widths, c, size, levels = [c0], c0, self.image_size, len(self.channel_mult)
        for level, mult in enumerate(self.channel_mult):
            for _ in range(self.num_res_blocks):
                total += res(c, c0 * mult) + (attn(c0 * mult) if size in self.attention_resolutions else 0)
                c = c0 * mult
                widths.append(c)
            if level < levels - 1:
                total += conv(c, c, 3)
                widths.append(c)
                size //= 2
        total += 2 * res(c, c) + attn(c)
        for level, mult in reversed(list(enumerate(self.channel_mult))):
            for i in range(self.num_res_blocks + 1):
                total += res(c + widths.pop(), c0 * mult)
                total += attn(c0 * mult) if size in self.attention_resolutions else 0
                c = c0 * mult
                if level > 0 and i == self.num_res_blocks:
                    size *= 2
        return total + 2 * c + conv(c, self.channels, 3)


def sinusoidal_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """(B,) -> (B, dim): the Transformer's sinusoidal position code (Vaswani et al. 2017) of a real-valued
    noise level, as DDPM embeds its timestep. Scaled by 1000 so c_noise = log(sigma)/4 in about [-2, 1.5]
    spans the frequencies the way DDPM's integer steps 0..999 do."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = 1000 * t.float()[:, None] * freqs[None]
    return torch.cat([args.cos(), args.sin()], dim=-1)


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, emb_dim: int, groups: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * c_out)  # scale and shift of the second norm (FiLM, "Improved DDPM")
        self.norm2 = nn.GroupNorm(groups, c_out)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.drop(F.silu(h)))
        return self.skip(x) + h


class Attention(nn.Module):
    """Self-attention over the pixels of a feature map, with a residual connection."""

    def __init__(self, channels: int, heads: int, groups: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, 3, self.heads, C // self.heads, H * W).unbind(1)
        q, k, v = (t.transpose(-1, -2) for t in (q, k, v))  # (B, heads, HW, d)
        y = F.scaled_dot_product_attention(q, k, v)
        return x + self.proj(y.transpose(-1, -2).reshape(B, C, H, W))


class UNet(nn.Module):
    config_class = UNetConfig

    def __init__(self, cfg: UNetConfig, init: bool = True) -> None:
        super().__init__()
        self.config = cfg
        c0, emb_dim = cfg.base_channels, 4 * cfg.base_channels
        self.time_mlp = nn.Sequential(nn.Linear(c0, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.class_emb = nn.Embedding(cfg.num_classes + 1, emb_dim) if cfg.num_classes else None
        self.stem = nn.Conv2d(cfg.channels, c0, 3, padding=1)
        self.down = nn.ModuleList()
        widths, c, size = [c0], c0, cfg.image_size
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                self.down.append(self._block(c, c0 * mult, size, emb_dim))
                c = c0 * mult
                widths.append(c)
            if level < len(cfg.channel_mult) - 1:
                self.down.append(nn.Conv2d(c, c, 3, stride=2, padding=1))  # halve the resolution
                widths.append(c)
                size //= 2
        self.mid = nn.ModuleList([ResBlock(c, c, emb_dim, cfg.groups, cfg.dropout),
                                  Attention(c, cfg.num_heads, cfg.groups),
                                  ResBlock(c, c, emb_dim, cfg.groups, cfg.dropout)])
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            for i in range(cfg.num_res_blocks + 1):
                self.up.append(self._block(c + widths.pop(), c0 * mult, size, emb_dim))
                c = c0 * mult
                if level > 0 and i == cfg.num_res_blocks:
                    self.up.append(nn.Upsample(scale_factor=2, mode="nearest"))
                    size *= 2
        self.out = nn.Sequential(nn.GroupNorm(cfg.groups, c), nn.SiLU(), nn.Conv2d(c, cfg.channels, 3, padding=1))
        if init:
            nn.init.zeros_(self.out[-1].weight)  # start as "predict zero": a stable first step
            nn.init.zeros_(self.out[-1].bias)

    def _block(self, c_in: int, c_out: int, size: int, emb_dim: int) -> nn.Module:
        cfg = self.config
        res = ResBlock(c_in, c_out, emb_dim, cfg.groups, cfg.dropout)
        if size in cfg.attention_resolutions:
            return nn.ModuleList([res, Attention(c_out, cfg.num_heads, cfg.groups)])
        return res

    @staticmethod
    def _run(block: nn.Module, h: Tensor, emb: Tensor) -> Tensor:
        if isinstance(block, nn.ModuleList):  # a residual block followed by attention
            return block[1](block[0](h, emb))
        if isinstance(block, ResBlock):
            return block(h, emb)
        return block(h)  # down- or upsampling

    def forward(self, x: Tensor, c_noise: Tensor, labels: Tensor | None = None) -> Tensor:
        cfg = self.config
        emb = self.time_mlp(sinusoidal_embedding(c_noise, cfg.base_channels))
        if self.class_emb is not None:
            if labels is None:
                labels = torch.full((x.shape[0],), cfg.num_classes, dtype=torch.long, device=x.device)
            emb = emb + self.class_emb(labels)
        h = self.stem(x)
        skips = [h]
        for block in self.down:
            h = self._run(block, h, emb)
            skips.append(h)
        for block in self.mid:
            h = block(h, emb) if isinstance(block, ResBlock) else block(h)
        for block in self.up:
            if isinstance(block, nn.Upsample):
                h = block(h)
            else:
                h = self._run(block, torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
