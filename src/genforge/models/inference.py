"""Weight layouts for fast decoding: fp32 with transposed weights, or int8 (fbgemm).

Decoding one token at a time is a chain of matrix-vector products, bound by how fast the
weights stream from memory. On the CPUs we measured, ``x @ W`` with W stored (in, out) reads at
about twice the rate of ``F.linear`` with nn.Linear's (out, in) layout (26 vs 13 GB/s for GPT-2's
output layer on 2 threads), because the former splits across threads along the output. So for
inference we store every Linear transposed; the tied embedding is read from the same transposed
matrix (a column gather), so no second copy exists.

``int8`` stores weights per-output-channel int8 and runs fbgemm's dynamic-quantization kernel
(activations are quantized per call). PyTorch's weight-only int8 kernel
(``_weight_int8pack_mm``) reads at only ~2 GB/s on AVX2 CPUs, ~25x slower.
"""
from __future__ import annotations

import warnings

import torch
import torch.nn as nn
from torch import Tensor


class TransposedLinear(nn.Module):
    """y = x @ W_t + b with ``W_t`` (in, out): a Linear in the layout matrix-vector products like."""

    def __init__(self, weight_t: Tensor, bias: Tensor | None) -> None:
        super().__init__()
        self.weight_t = nn.Parameter(weight_t, requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias.detach(), requires_grad=False)

    def forward(self, x: Tensor) -> Tensor:
        if self.bias is None:
            return x @ self.weight_t
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight_t).view(*x.shape[:-1], -1)


class TransposedEmbedding(nn.Module):
    """Embedding lookup from a (dim, vocab) matrix shared with a TransposedLinear output layer."""

    def __init__(self, weight_t: Tensor) -> None:
        super().__init__()
        self.weight_t = weight_t  # a Parameter owned by the output layer

    def forward(self, ids: Tensor) -> Tensor:
        return self.weight_t[:, ids.reshape(-1)].t().reshape(*ids.shape, -1)


def quantize_rows(weight: Tensor, chunk: int = 4096) -> tuple[Tensor, Tensor]:
    """Symmetric per-row int8: ``weight`` (out, in) -> (int8 (out, in), scale (out,)).

    Works through ``chunk`` rows at a time, so a large matrix never needs a second fp32 copy.
    """
    q = torch.empty(weight.shape, dtype=torch.int8)
    scale = torch.empty(weight.shape[0])
    for i in range(0, weight.shape[0], chunk):
        w = weight[i:i + chunk].float()
        s = (w.abs().amax(dim=1) / 127.0).clamp(min=1e-12)
        q[i:i + chunk] = torch.round(w / s[:, None]).clamp(-127, 127).to(torch.int8)
        scale[i:i + chunk] = s
    return q, scale


class Int8Linear(nn.Module):
    """fbgemm dynamic-quantized Linear: int8 weights (per output channel), fp32 in and out."""

    def __init__(self, weight: Tensor, bias: Tensor | None, quantized: tuple[Tensor, Tensor] | None = None) -> None:
        super().__init__()
        q, scale = quantized if quantized is not None else quantize_rows(weight.detach())
        with warnings.catch_warnings():  # torch flags the eager quantization API as moving to torchao
            warnings.simplefilter("ignore")
            qweight = torch._make_per_channel_quantized_tensor(
                q, scale.double(), torch.zeros(scale.shape, dtype=torch.long), 0)
        b = None if bias is None else bias.detach().float()
        self._packed = torch.ops.quantized.linear_prepack(qweight, b)
        self.out_features = q.shape[0]

    def forward(self, x: Tensor) -> Tensor:
        y = torch.ops.quantized.linear_dynamic(x.reshape(-1, x.shape[-1]).contiguous(), self._packed, True)
        return y.view(*x.shape[:-1], self.out_features)


class Int8Embedding(nn.Module):
    """Per-row int8 embedding table, dequantized on lookup."""

    def __init__(self, weight: Tensor | None, quantized: tuple[Tensor, Tensor] | None = None) -> None:
        super().__init__()
        self.q, scale = quantized if quantized is not None else quantize_rows(weight.detach())
        self.scale = scale[:, None]

    def forward(self, ids: Tensor) -> Tensor:
        return self.q[ids].float() * self.scale[ids]


def _swap_linears(module: nn.Module, make) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.Linear):
            setattr(module, name, make(child))
        else:
            _swap_linears(child, make)


@torch.no_grad()
def prepare_for_inference(model: nn.Module, quantize: str | None = None) -> nn.Module:
    """Convert a trained GPT or RNN LM in place to the fast decode layout; returns it in eval mode.

    ``quantize``: None keeps fp32 (transposed); "int8" quantizes every Linear (CPU only).
    The converted model is for inference only: it has no gradients and cannot be saved back.
    """
    if quantize not in (None, "int8"):
        from ..errors import ConfigError

        raise ConfigError(f"quantize={quantize!r} is unknown: allowed none or 'int8'")
    model.eval()
    on_cpu = all(p.device.type == "cpu" for p in model.parameters())
    tied = getattr(model, "lm_head", None) is not None and hasattr(model, "transformer") \
        and getattr(model.lm_head, "weight", None) is getattr(model.transformer.wte, "weight", False)
    if quantize == "int8":
        if not on_cpu:
            from ..errors import ConfigError

            raise ConfigError("int8 quantization runs on the CPU only (fbgemm); use bf16 on a GPU")
        if tied:  # one int8 copy of the shared matrix serves both the lookup and the output layer
            rows = quantize_rows(model.lm_head.weight.detach())
            model.transformer.wte = Int8Embedding(None, rows)
            model.lm_head = Int8Linear(None, None, rows)
        _swap_linears(model, lambda m: Int8Linear(m.weight, m.bias))
    elif on_cpu:  # on GPUs nn.Linear's own layout is already fast
        _swap_linears(model, lambda m: TransposedLinear(m.weight.t().contiguous(), m.bias))
        if tied:
            model.transformer.wte = TransposedEmbedding(model.lm_head.weight_t)
    for p in model.parameters():
        p.requires_grad_(False)
    return model
