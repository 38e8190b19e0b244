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

import ctypes
import functools
import warnings
from collections.abc import Callable

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


RowReader = Callable[[int, int], Tensor]  # (start, stop) -> those rows of a matrix


def _empty_qint8(shape: tuple[int, int], scale: Tensor) -> Tensor:
    with warnings.catch_warnings():  # torch flags the eager quantization API as moving to torchao
        warnings.simplefilter("ignore")
        return torch._empty_per_channel_affine_quantized(
            shape, scales=scale.double(), zero_points=torch.zeros(scale.shape, dtype=torch.long), axis=0,
            dtype=torch.qint8)


def int8_values(qweight: Tensor) -> Tensor:
    """The int8 values of a qint8 tensor as a plain int8 tensor that shares its memory."""
    return torch.empty(0, dtype=torch.int8).set_(qweight.untyped_storage(), qweight.storage_offset(),
                                                 qweight.shape, qweight.stride())


def quantize_rows(weight: Tensor | RowReader, rows: int | None = None, chunk: int = 1024) -> Tensor:
    """Symmetric per-row int8 of a matrix (out, in): a qint8 tensor with one scale per row.

    ``weight`` is a tensor, or a function that returns rows [i, j) of a ``rows``-row matrix (e.g.
    read from a file). Either way the matrix is visited ``chunk`` rows at a time, twice (scales,
    then values), so no full-size fp32 copy is ever made; the values are written straight into the
    quantized tensor. ``Int8Embedding`` reads that tensor's memory as it is; ``Int8Linear`` has
    fbgemm pack it into fbgemm's own layout (a copy), after which the caller may drop it.
    """
    read = weight if callable(weight) else (lambda i, j: weight[i:j])
    rows = weight.shape[0] if rows is None else rows
    spans = [(i, min(i + chunk, rows)) for i in range(0, rows, chunk)]
    scale = torch.cat([(read(i, j).float().abs().amax(dim=1) / 127.0).clamp(min=1e-12) for i, j in spans])
    qweight = q = None
    for i, j in spans:
        w = read(i, j).to(torch.float32, copy=True)  # a copy: scaled in place below
        if qweight is None:
            qweight = _empty_qint8((rows, w.shape[1]), scale)
            q = int8_values(qweight)
        q[i:j] = w.div_(scale[i:j, None]).round_().clamp_(-127, 127)  # in place: one chunk-sized temporary
    return qweight


@functools.cache
def _malloc_trim():
    try:
        fn = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    fn.argtypes = [ctypes.c_size_t]
    return fn


def release_freed_memory() -> None:
    """Hand memory that was freed back to the OS now (glibc's ``malloc_trim``; a no-op elsewhere).

    Loading alternates short-lived fp32 matrices with long-lived int8 ones of other sizes. glibc
    serves both from its heap once its adaptive mmap threshold has grown, and the freed matrices
    stay resident as holes between the kept ones: loading GPT-2 124M in int8 then peaked ~150 MB
    above the model's size. Trimming after each matrix keeps the peak at the model plus one matrix.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


class Int8Linear(nn.Module):
    """fbgemm dynamic-quantized Linear: int8 weights (per output channel), fp32 in and out."""

    def __init__(self, weight: Tensor | None, bias: Tensor | None, quantized: Tensor | None = None) -> None:
        """``quantized``: the ``quantize_rows`` of the weight, when the caller already has it."""
        super().__init__()
        qweight = quantized if quantized is not None else quantize_rows(weight.detach())
        b = None if bias is None else bias.detach().float()
        self._packed = torch.ops.quantized.linear_prepack(qweight, b)
        self.out_features, self.in_features = qweight.shape
        self.has_bias = b is not None

    def forward(self, x: Tensor) -> Tensor:
        y = torch.ops.quantized.linear_dynamic(x.reshape(-1, x.shape[-1]).contiguous(), self._packed, True)
        return y.view(*x.shape[:-1], self.out_features)


class Int8Embedding(nn.Module):
    """Per-row int8 embedding table, dequantized on lookup."""

    def __init__(self, weight: Tensor | None, quantized: Tensor | None = None) -> None:
        """``quantized``: the ``quantize_rows`` of the weight; its values are shared, not copied."""
        super().__init__()
        qweight = quantized if quantized is not None else quantize_rows(weight.detach())
        self.register_buffer("q", int8_values(qweight))
        self.register_buffer("scale", qweight.q_per_channel_scales().float()[:, None])

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
