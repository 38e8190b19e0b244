"""A decoder-only Transformer (GPT-2 layout) with a preallocated KV cache.

Read top to bottom: config, layers, model. The parameter names follow Hugging Face's GPT-2
(``transformer.h.0.attn.c_attn`` ...) except that weights are stored (out, in) like nn.Linear,
so GPT-2 checkpoints load with a transpose (see ``gpt2_hf.py``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int = 65  # tokens in the codec's vocabulary
    block_size: int = 256  # context length: positions the model can attend over
    n_layer: int = 4  # Transformer blocks
    n_head: int = 4  # attention heads; n_embd must divide by it
    n_embd: int = 128  # residual stream width
    dropout: float = 0.0  # dropout on attention weights and residual branches (training only)
    bias: bool = True  # biases in Linear and LayerNorm (GPT-2 has them)
    tie_weights: bool = True  # share the token embedding with the output layer (Press & Wolf 2017)
    layer_norm_eps: float = 1e-5  # GPT-2 uses 1e-5
    activation: str = "gelu_tanh"  # GPT-2's tanh GELU, "gelu" (exact, erf; nanoGPT's) or "relu2" (ReLU squared)
    position: str = "learned"  # GPT-2's learned position embeddings, or "rope" (rotary, Su et al. 2021)
    rope_base: float = 10000.0  # RoPE's wavelength base (pair i turns by base^(-2i/head_dim) per position)

    def __post_init__(self) -> None:
        from ..errors import ConfigError

        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"model.{name}={v!r} is invalid: allowed an integer >= 1")
        if self.n_embd % self.n_head:
            raise ConfigError(
                f"model.n_embd={self.n_embd} must be divisible by model.n_head={self.n_head}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model.dropout={self.dropout!r} is invalid: allowed 0 <= dropout < 1")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"model.activation={self.activation!r} is invalid: allowed "
                              f"{', '.join(map(repr, ACTIVATIONS))}")
        if self.position not in POSITIONS:
            raise ConfigError(f"model.position={self.position!r} is invalid: allowed "
                              f"{', '.join(map(repr, POSITIONS))}")
        if isinstance(self.rope_base, bool) or not isinstance(self.rope_base, int | float) or self.rope_base <= 1:
            raise ConfigError(f"model.rope_base={self.rope_base!r} is invalid: allowed a number > 1")


    def num_parameters(self) -> int:
        """Parameters a GPT of this config has (tied weights once), computed without building it."""
        c, b = self.n_embd, int(self.bias)
        block = 2 * (c + b * c) + (3 * c * c + b * 3 * c) + (c * c + b * c) + (4 * c * c + b * 4 * c) \
            + (4 * c * c + b * c)  # ln_1, ln_2, c_attn, attn.c_proj, c_fc, mlp.c_proj
        embeddings = self.vocab_size * c + (self.block_size * c if self.position == "learned" else 0)
        head = 0 if self.tie_weights else self.vocab_size * c
        return embeddings + self.n_layer * block + (c + b * c) + head


def _relu2(x: Tensor) -> Tensor:
    return F.relu(x).square()


# model.activation -> the MLP's nonlinearity. GELU (Hendrycks & Gimpel 2016): GPT-2 uses the tanh
# approximation; the exact (erf) form is nanoGPT's, and ~30% faster on CPUs (one fused kernel either
# way). ReLU squared (So et al. 2021, "Primer") learns faster on small budgets.
ACTIVATIONS = {"gelu_tanh": partial(F.gelu, approximate="tanh"), "gelu": F.gelu, "relu2": _relu2}
POSITIONS = ("learned", "rope")


def rope_angles(pos: Tensor, head_dim: int, base: float) -> tuple[Tensor, Tensor]:
    """The rotary tables for positions ``pos`` (any shape), computed in fp32 whatever the model's
    dtype: ``cos`` and signed ``sin``, each (*pos.shape, head_dim). Pair i of a head (dims i and
    i + head_dim/2, the half-split layout) turns by ``pos * base ** (-2i / head_dim)``; both halves
    of ``cos`` hold cos of those angles, ``sin`` holds -sin in the first half and sin in the second."""
    inv_freq = base ** (-torch.arange(0, head_dim, 2, device=pos.device, dtype=torch.float32) / head_dim)
    angles = pos.to(torch.float32)[..., None] * inv_freq
    cos, sin = angles.cos(), angles.sin()
    return torch.cat((cos, cos), dim=-1), torch.cat((-sin, sin), dim=-1)


def rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Turn each pair (a, b) = (x_i, x_{i+d/2}) of ``x`` (..., d) by its angle: (a cos - b sin,
    b cos + a sin), as x * cos + (x with its halves swapped) * signed sin: four kernels. Queries and
    keys turned by their own positions have dot products that depend only on their distance."""
    swapped = x.unflatten(-1, (2, -1)).flip(-2).flatten(-2)
    return x * cos + swapped * sin


class KVCache:
    """Keys and values for every layer, preallocated to ``max_len`` positions.

    ``pos`` is how many positions are filled. Preallocation keeps decode free of ``torch.cat``
    reallocations (each step writes one slice in place).
    """

    def __init__(self, n_layer: int, batch: int, n_head: int, max_len: int, head_dim: int,
                 dtype: torch.dtype, device: torch.device) -> None:
        shape = (n_layer, batch, n_head, max_len, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.pos = 0

    def reorder(self, index: Tensor) -> KVCache:
        self.k = self.k.index_select(1, index)
        self.v = self.v.index_select(1, index)
        return self

    # --- rows, for continuous batching: each row is one sequence with its own length ---------
    def rows(self, n: int) -> KVCache:
        """A cache over rows 0..n-1 that shares this one's storage (writes go through)."""
        view = KVCache.__new__(KVCache)
        view.k, view.v, view.pos = self.k[:, :n], self.v[:, :n], self.pos
        return view

    def put_row(self, row: int, single: KVCache, length: int) -> None:
        """Copy the first ``length`` positions of a one-row cache into ``row``."""
        self.k[:, row, :, :length] = single.k[:, 0, :, :length]
        self.v[:, row, :, :length] = single.v[:, 0, :, :length]

    def move_row(self, src: int, dst: int, length: int) -> None:
        self.k[:, dst, :, :length] = self.k[:, src, :, :length]
        self.v[:, dst, :, :length] = self.v[:, src, :, :length]


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)  # q, k, v fused
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.dropout = cfg.dropout
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, cache: KVCache | None = None, layer: int = 0,
                lengths: Tensor | None = None, rope: tuple[Tensor, Tensor] | None = None) -> Tensor:
        B, T, C = x.shape
        nh, hs = self.n_head, C // self.n_head
        qkv = self.c_attn(x)
        qk = qkv[..., :2 * C].view(B, T, 2 * nh, hs)
        if rope is not None:  # queries and keys turned in one go; keys are cached turned by their positions
            qk = rotate(qk, *rope)
        q = qk[:, :, :nh].transpose(1, 2)  # (B, nh, T, hs)
        k = qk[:, :, nh:].transpose(1, 2)
        v = qkv[..., 2 * C:].view(B, T, nh, hs).transpose(1, 2)
        if lengths is not None:  # ragged decode (T == 1): row b writes at and attends up to lengths[b]
            rows = torch.arange(B, device=x.device)
            cache.k[layer, rows, :, lengths] = k[:, :, 0]
            cache.v[layer, rows, :, lengths] = v[:, :, 0]
            span = int(lengths.max()) + 1
            keys = torch.arange(span, device=x.device)
            mask = (keys[None, :] <= lengths[:, None])[:, None, None, :]  # (B, 1, 1, span)
            y = F.scaled_dot_product_attention(q, cache.k[layer, :, :, :span], cache.v[layer, :, :, :span],
                                               attn_mask=mask)
        elif cache is None:
            y = F.scaled_dot_product_attention(
                q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0
            )
        else:
            p = cache.pos
            cache.k[layer, :, :, p : p + T] = k
            cache.v[layer, :, :, p : p + T] = v
            k = cache.k[layer, :, :, : p + T]  # (B, nh, p+T, hs)
            v = cache.v[layer, :, :, : p + T]
            if T == 1:  # one new query sees every cached position: no mask needed
                y = F.scaled_dot_product_attention(q, k, v)
            elif p == 0:
                y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            else:  # query i (absolute p+i) sees keys 0..p+i
                mask = torch.ones(T, p + T, dtype=torch.bool, device=x.device).tril(diagonal=p)
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias)
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)
        self.act = ACTIVATIONS[cfg.activation]

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))


class Block(nn.Module):
    """Pre-LayerNorm residual block (GPT-2)."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_eps, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_eps, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x: Tensor, cache: KVCache | None = None, layer: int = 0,
                lengths: Tensor | None = None, rope: tuple[Tensor, Tensor] | None = None) -> Tensor:
        x = x + self.attn(self.ln_1(x), cache, layer, lengths, rope)
        return x + self.mlp(self.ln_2(x))


def _embedding(num: int, dim: int, init: bool) -> nn.Embedding:
    """An embedding, left uninitialised when weights are loaded next. (On the meta device,
    nn.Embedding's own normal_ init imports torch._dynamo: ~70 MB of resident memory and ~1 s.)"""
    return nn.Embedding(num, dim) if init else nn.Embedding(num, dim, _weight=torch.empty(num, dim))


class GPT(nn.Module):
    """Decoder-only Transformer language model; a ``StepModel`` for the samplers."""

    kind = "transformer"
    config_class = GPTConfig

    def __init__(self, cfg: GPTConfig, init: bool = True) -> None:
        """``init=False`` skips weight initialisation, for models whose weights are loaded next."""
        super().__init__()
        self.config = cfg
        self.vocab_size = cfg.vocab_size
        self.max_len = cfg.block_size
        self.transformer = nn.ModuleDict(dict(
            wte=_embedding(cfg.vocab_size, cfg.n_embd, init),
            **({"wpe": _embedding(cfg.block_size, cfg.n_embd, init)} if cfg.position == "learned" else {}),
            drop=nn.Dropout(cfg.dropout),
            h=nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer)),
            ln_f=nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_eps, bias=cfg.bias),
        ))
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_weights:
            self.lm_head.weight = self.transformer.wte.weight
        if init:
            self._init_all()

    def _init_all(self) -> None:
        cfg = self.config
        self.apply(self._init_weights)
        # GPT-2 scales residual projections by 1/sqrt(2 * n_layer) so the stream's variance stays flat
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())  # tied weights counted once

    def _hidden(self, idx: Tensor, start: int, cache: KVCache | None, lengths: Tensor | None = None) -> Tensor:
        T = idx.shape[1]
        pos = lengths[:, None] if lengths is not None else torch.arange(start, start + T, device=idx.device)
        x, rope = self.transformer.wte(idx), None
        if self.config.position == "learned":
            x = x + self.transformer.wpe(pos)
        else:  # tables (T, 1, hs) or, for ragged rows, (B, 1, 1, hs): broadcast over (B, T, heads, hs)
            cfg = self.config
            cos, sin = rope_angles(pos, cfg.n_embd // cfg.n_head, cfg.rope_base)
            rope = cos.unsqueeze(-2).to(x.dtype), sin.unsqueeze(-2).to(x.dtype)
        x = self.transformer.drop(x)
        for i, block in enumerate(self.transformer.h):
            x = block(x, cache, i, lengths, rope)
        return self.transformer.ln_f(x)  # (B, T, C)

    def embed(self, idx: Tensor) -> Tensor:
        """Mean-pooled final hidden states (B, C) of ``idx`` (B, T): a sentence embedding."""
        return self._hidden(idx, 0, None).mean(dim=1)

    def forward(self, idx: Tensor) -> Tensor:
        """Logits (B, T, V) for every position of ``idx`` (B, T); used for training and scoring."""
        if idx.shape[1] > self.max_len:
            raise ValueError(f"sequence of {idx.shape[1]} tokens exceeds context {self.max_len}")
        return self.lm_head(self._hidden(idx, 0, None))

    # --- StepModel -------------------------------------------------------------------------
    def init_state(self, batch_size: int, max_len: int) -> KVCache:
        cfg = self.config
        p = self.transformer.ln_f.weight  # never converted by prepare_for_inference
        return KVCache(cfg.n_layer, batch_size, cfg.n_head, min(max_len, self.max_len),
                       cfg.n_embd // cfg.n_head, p.dtype, p.device)

    def step(self, ids: Tensor, state: KVCache) -> tuple[Tensor, KVCache]:
        """Consume ``ids`` (B, T) at the cache position; logits for the last position only (B, 1, V).

        Only the last position's logits are needed to sample, and skipping the output layer for
        the other prompt positions saves a (T, C) x (C, V) product at prefill.
        """
        T = ids.shape[1]
        if state.pos + T > state.k.shape[3]:
            raise ValueError(f"KV cache holds {state.k.shape[3]} positions; {state.pos + T} needed")
        h = self._hidden(ids, state.pos, state)
        state.pos += T
        return self.lm_head(h[:, -1:]), state

    def verify(self, ids: Tensor, state: KVCache) -> Tensor:
        """Like ``step``, but logits for every consumed position (B, T, V): what speculative decoding
        checks drafted tokens with. Setting ``state.pos`` back forgets positions (the rollback)."""
        T = ids.shape[1]
        if state.pos + T > state.k.shape[3]:
            raise ValueError(f"KV cache holds {state.k.shape[3]} positions; {state.pos + T} needed")
        h = self._hidden(ids, state.pos, state)
        state.pos += T
        return self.lm_head(h)

    def reorder_state(self, state: KVCache, index: Tensor) -> KVCache:
        return state.reorder(index)

    # --- BatchedStepModel: rows of one cache, each its own sequence (continuous batching) -----
    def put_row(self, state: KVCache, row: int, single: KVCache) -> None:
        state.put_row(row, single, single.pos)

    def move_row(self, state: KVCache, src: int, dst: int, length: int) -> None:
        state.move_row(src, dst, length)

    def step_rows(self, ids: Tensor, state: KVCache, lengths: Tensor) -> Tensor:
        """One new token per row, ``ids`` (n, 1), into rows 0..n-1 of ``state``, where row b already
        holds ``lengths[b]`` positions. Returns logits (n, 1, V); the caller advances ``lengths``."""
        n = ids.shape[0]
        if int(lengths.max()) >= state.k.shape[3]:
            raise ValueError(f"KV cache holds {state.k.shape[3]} positions; a row needs more")
        rows = state.rows(n)
        if n == 1:  # a lone row: the plain cached step (no ragged mask), exactly as ``step`` runs it
            rows.pos = int(lengths[0])
            return self.step(ids, rows)[0]
        return self.lm_head(self._hidden(ids, 0, rows, lengths.to(ids.device)))
