"""The green-list watermark (Kirchenbauer et al. 2023, "A Watermark for Large Language Models", ICML):
which tokens are "green" after a context, and the logit bias that makes a model prefer them.

At every step the vocabulary is split, pseudo-randomly and under a secret key, into a green fraction
``gamma`` and a red rest, the split depending on the ``context`` tokens to the left of the position
(the paper's h). h = 1 is its "LeftHash" scheme; genforge's default h = 2 hashes the two tokens to the
left in order (a LeftHash over a wider context, like the "Additive" scheme of Kirchenbauer et al. 2023b
but order-sensitive; see ``WatermarkSettings`` for why). Adding ``delta`` to the green logits before sampling
(the paper's "soft" watermark, Algorithm 2) leaves high-entropy steps free to pick green tokens and
barely moves low-entropy ones, so text quality stays close while watermarked text holds far more green
tokens than the ``gamma`` share that text written without the key holds. Detection (``safety.watermark``)
counts green tokens and runs a one-proportion z-test; it needs only the key, never the model's logits.

The split is a keyed hash, not a seeded permutation. The paper's reference code seeds a generator with
``key * previous_token`` and draws ``randperm(V)`` at every step: one sequential call per row. Here token
``c`` is green after context ``x`` when ``seed(x) * code(c) mod P < gamma * P`` (P = 2**31 - 1), where
``seed`` hashes the h context ids and ``code`` the token id, both a few rounds of multiply-mod-prime and
xor-shift mixing keyed by SHA-256 of the key. All of it is int64 tensor arithmetic whose products fit in
63 bits, so a mask is the same on every device; a (B, V) mask is one multiply and a division-free
reduction per element over a cached table of the V codes (a (16, 50257) mask in 4-8 ms on one CPU
thread), the few rows' seeds are Python integers (cached), and one (context, token) pair costs a handful
of operations, which is what detection uses. Each token is green with probability ``gamma``
independently, so the green list's size varies around ``gamma * V``: exactly the null hypothesis of the
detector's z-test. (The paper's lists hold exactly ``gamma * V`` tokens; with 84 characters that embeds
a little more strongly at the same delta: mean z 4.40 against 4.13 over six keys at h = 1, delta 3.)

The hash is not a cryptographic PRF: like the paper's own hashing it resists casual forgery, not an
adversary who collects many watermarked texts to infer the green lists (Kirchenbauer et al. 2023b,
"On the Reliability of Watermarks for Large Language Models", discuss the trade-offs of schemes).
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import torch
from torch import Tensor

from ..errors import ConfigError

SCHEME = "lefthash-mulmod31"  # the hash below; a detector refuses settings made under another scheme
_P = 2**31 - 1  # a Mersenne prime: values stay below 2**31, products below 2**62 (int64 never overflows)
_PAD = -1  # context id of a position before the first token (a prompt shorter than the context width)
MAX_CONTEXT = 8  # widest context the hash accepts (wider contexts repeat less but survive edits worse)


class WatermarkError(ConfigError):
    """Watermark settings outside their rule; ``param`` names the field."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class WatermarkSettings:
    """What embedding and detection must share. Validated on construction (a bad field raises
    ``WatermarkError`` naming it). The key is left out of ``repr`` so logs never show it.

    The defaults are measured (``benchmarks/watermark.py``: the bundled 84-character shakespeare-char,
    temperature 0.8, 128 held-out prompts, 200 new tokens): gamma 0.25, delta 3, h = 2 find 99% of the
    samples at z >= 4 (98-100% under each of five keys) with no false positive among 6,264 human passages
    (held-out Shakespeare, KJV, Python code), 79% still after 10% of the tokens are replaced at random,
    for x1.22-1.32 perplexity under the unwatermarked model. delta 2 finds only 43-64% at h = 1-2:
    characters carry little entropy each, so a character model needs a larger delta than the paper's 2
    for 50k-token vocabularies. delta 4 survives edits better (99% after 10%) for x1.57 perplexity. h = 2
    scores more distinct pairs than h = 1 (a repeated pair counts once), depends far less on the key (with
    h = 1 a key fixes just 84 green lists: TPR 20-90% across keys at delta 3), and survives edits better
    than h = 4 (an edit spoils the h + 1 pairs it is part of).
    """

    key: str = field(repr=False)  # the secret: whoever holds it can detect (and could forge) the mark
    gamma: float = 0.25  # fraction of the vocabulary green after each context, in (0, 1)
    delta: float = 3.0  # added to the logits of green tokens, >= 0 (0: embeds nothing)
    context: int = 2  # tokens to the left the green list depends on (h; 1 = the paper's LeftHash)
    min_tokens: int = 25  # detection: fewer scored tokens than this is "inconclusive"
    z_threshold: float = 4.0  # detection: z at or above this is "watermarked" (4: one-sided p ~ 3e-5)
    scheme: str = SCHEME  # which hash makes the green lists

    def __post_init__(self) -> None:
        def bad(name: str, allowed: str) -> None:
            raise WatermarkError(name, f"watermark {name}={getattr(self, name)!r} is invalid: allowed {allowed}")

        if not isinstance(self.key, str) or len(self.key) < 16:
            raise WatermarkError("key", "watermark key is invalid: allowed a string of at least 16 characters "
                                 "(genforge makes a random 64-character one)")
        if not _number(self.gamma) or not 0 < self.gamma < 1:
            bad("gamma", "a number strictly between 0 and 1")
        if not _number(self.delta) or not 0 <= self.delta <= 100:
            bad("delta", "a number from 0 to 100")
        if isinstance(self.context, bool) or not isinstance(self.context, int) \
                or not 1 <= self.context <= MAX_CONTEXT:
            bad("context", f"an integer from 1 to {MAX_CONTEXT}")
        if isinstance(self.min_tokens, bool) or not isinstance(self.min_tokens, int) or self.min_tokens < 1:
            bad("min_tokens", "an integer >= 1")
        if not _number(self.z_threshold) or self.z_threshold <= 0:
            bad("z_threshold", "a number > 0")
        if self.scheme != SCHEME:
            bad("scheme", repr(SCHEME))


def _number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


@lru_cache(maxsize=64)
def _constants(key: str, scheme: str) -> tuple[int, ...]:
    """Eight 31-bit multipliers and offsets in [1, 2**30) from SHA-256 of the scheme and key."""
    digest = hashlib.sha256(f"genforge-watermark:{scheme}:{key}".encode()).digest()
    return tuple(int.from_bytes(digest[4 * i:4 * i + 4], "little") % (2**30 - 1) + 1 for i in range(8))


def _mix(x: Any, a: int, b: int, c: int) -> Any:
    """Two rounds of multiply-mod-P and xor-shift over values in [0, P) (int64 tensors or Python ints, with
    the same results); stays in [0, 2**31)."""
    x = (x * a + b) % _P
    x = x ^ (x >> 16)
    x = (x * c + a) % _P
    return x ^ (x >> 13)


def _fold(x: Tensor) -> Tensor:
    """Reduce 0 <= x < 2**62 modulo P without a division, in place: P = 2**31 - 1, so x = hi * 2**31 + lo
    is hi + lo mod P. Two folds leave a value below 2**31 + 2 congruent to x: the residue itself, except
    that residues 1 and 2 may come out as P + 1 and P + 2 (a 1e-9 corner that is the same everywhere,
    which is all a hash needs). ~5x faster than ``%`` on int64 tensors: it runs on a (B, V) grid every step."""
    for _ in range(2):
        hi = x >> 31
        x.bitwise_and_(_P).add_(hi)
    return x


def _seeds(context: Tensor, settings: WatermarkSettings) -> Tensor:
    """(N, h) context ids -> (N,) seeds in [1, P): an order-sensitive polynomial hash, then mixed."""
    k = _constants(settings.key, settings.scheme)
    s = torch.full(context.shape[:1], k[0], dtype=torch.long, device=context.device)
    for j in range(context.shape[1]):
        s = (s * k[1] + context[:, j].long() + 2) % _P  # ids >= -1 (the pad), so the term is positive
    return _mix(s, k[2], k[3], k[4]) % (_P - 1) + 1  # nonzero: it multiplies the token's code below


@lru_cache(maxsize=1 << 16)
def _seed_of(context: tuple[int, ...], key: str, scheme: str) -> int:
    """``_seeds`` of one context in Python integers (the same numbers: neither form overflows), cached: a
    step's few rows cost less this way than as a dozen tensor operations."""
    k = _constants(key, scheme)
    s = k[0]
    for t in context:
        s = (s * k[1] + t + 2) % _P
    return _mix(s, k[2], k[3], k[4]) % (_P - 1) + 1


def _codes(tokens: Tensor, settings: WatermarkSettings) -> Tensor:
    """Each token id's keyed code in [1, P) (mixed, so neighbouring ids get unrelated codes)."""
    k = _constants(settings.key, settings.scheme)
    return _mix(_mix((tokens.long() + k[5]) % _P, k[6], k[7], k[5]), k[7], k[5], k[6]) % (_P - 1) + 1


@lru_cache(maxsize=16)
def _vocab_codes(key: str, scheme: str, vocab_size: int, device: str) -> Tensor:
    settings = WatermarkSettings(key, scheme=scheme)
    return _codes(torch.arange(vocab_size, device=device), settings)


def _prf(seeds: Tensor, codes: Tensor) -> Tensor:
    """The keyed hash of (context, token) pairs, broadcast: ``seed * code mod P`` (see ``_fold``). Both factors
    are nonzero mod the prime P, so is the product; for one context the codes are permuted (multiplying
    by a unit is a bijection), and two contexts' green lists relate through an unknown random factor, not
    a shift (which a sum would give)."""
    return _fold(seeds * codes)


def _threshold(settings: WatermarkSettings) -> int:
    return int(round(settings.gamma * _P))


def _check_context(context: Tensor, settings: WatermarkSettings) -> Tensor:
    if context.dim() == 1:
        context = context.unsqueeze(-1)
    if context.dim() != 2 or context.shape[1] != settings.context:
        raise ValueError(f"context ids must be (B, {settings.context}), got {tuple(context.shape)}")
    return context


def green_mask(context: Tensor, vocab_size: int, settings: WatermarkSettings,
               device: torch.device | None = None) -> Tensor:
    """(B, V) bool: which tokens are green after each row's context, ``context`` (B, h) token ids (or (B,)
    when h = 1; -1 pads a row with fewer than h tokens). One vectorized hash over the whole (B, V) grid,
    made on ``device`` (default: the context's; a CPU context for GPU logits costs no device sync)."""
    context = _check_context(context, settings)
    device = torch.device(device) if device is not None else context.device
    seeds = torch.tensor([_seed_of(tuple(r), settings.key, settings.scheme) for r in context.tolist()],
                         dtype=torch.long, device=device)  # (B,)
    codes = _vocab_codes(settings.key, settings.scheme, vocab_size, str(device))  # (V,)
    return _prf(seeds[:, None], codes[None, :]) < _threshold(settings)  # (B, V)


def is_green(context: Tensor, tokens: Tensor, settings: WatermarkSettings) -> Tensor:
    """(N,) bool: whether ``tokens[i]`` is green after ``context[i]`` (N, h); the pairwise form of
    ``green_mask``, so detection never builds an (N, V) grid (V is 50,257 for GPT-2's codec)."""
    context = _check_context(context, settings)
    return _prf(_seeds(context, settings), _codes(tokens.to(context.device), settings)) < _threshold(settings)


def apply_watermark(logits: Tensor, context: Tensor, settings: WatermarkSettings) -> Tensor:
    """``logits`` (B, V) with ``settings.delta`` added to each row's green tokens (the paper's soft
    watermark). ``delta == 0`` returns ``logits`` itself, so generation is then exactly unwatermarked."""
    if settings.delta == 0:
        return logits
    mask = green_mask(context, logits.shape[-1], settings, logits.device)
    return torch.where(mask, logits + settings.delta, logits)


def context_rows(rows: Sequence[Sequence[int]], width: int, device: torch.device | None = None) -> Tensor:
    """(R, width) long tensor of each row's last ``width`` ids, left-padded with -1 where a row is shorter:
    the context of each row's next token."""
    out = [[_PAD] * (width - len(r[-width:])) + [int(t) for t in r[-width:]] for r in rows]
    return torch.tensor(out, dtype=torch.long, device=device)
