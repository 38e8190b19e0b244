"""Logits processors: pure functions over (B, V) float logits, and ``sample_next`` which chains them.

Every filter returns a new tensor with the dropped logits set to ``-inf`` and never drops a row's most
likely token, so the result always has at least one finite logit per row.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..types import SamplingParams
from .watermark import apply_watermark, context_rows

_NEG_INF = float("-inf")


def apply_penalties(
    logits: Tensor,
    counts: Tensor,
    repetition_penalty: float = 1.0,
    frequency_penalty: float = 0.0,
    presence_penalty: float = 0.0,
) -> Tensor:
    """Penalise tokens that already occurred. ``counts`` (B, V) counts each token in prompt + output.

    Repetition penalty (CTRL, Keskar et al. 2019, "CTRL: A Conditional Transformer Language Model for
    Controllable Generation"): for every seen token a positive logit is divided by the penalty and a
    negative one multiplied, so a penalty > 1 always makes a seen token less likely.

    Frequency and presence penalties (OpenAI API definition):
    ``logit -= count * frequency_penalty + (count > 0) * presence_penalty``.
    """
    if repetition_penalty == 1.0 and frequency_penalty == 0.0 and presence_penalty == 0.0:
        return logits
    counts = counts.to(device=logits.device, dtype=logits.dtype)
    seen = counts > 0
    out = logits
    if repetition_penalty != 1.0:
        scaled = torch.where(out > 0, out / repetition_penalty, out * repetition_penalty)
        out = torch.where(seen, scaled, out)
    if frequency_penalty != 0.0 or presence_penalty != 0.0:
        out = out - counts * frequency_penalty - seen.to(out.dtype) * presence_penalty
    return out


def apply_temperature(logits: Tensor, temperature: float) -> Tensor:
    """Divide logits by ``temperature`` (> 0): below 1 sharpens, above 1 flattens the distribution."""
    if temperature <= 0.0:
        raise ValueError(f"temperature must be > 0 here (0 means greedy), got {temperature}")
    return logits if temperature == 1.0 else logits / temperature


def top_k_filter(logits: Tensor, k: int) -> Tensor:
    """Keep the ``k`` largest logits of each row (Fan et al. 2018, "Hierarchical Neural Story
    Generation"); ``k <= 0`` or ``k >= V`` is a no-op. Ties at the k-th value are all kept."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, _NEG_INF)


def top_p_filter(logits: Tensor, top_p: float) -> Tensor:
    """Nucleus filtering (Holtzman et al. 2019, "The Curious Case of Neural Text Degeneration").

    Keeps the smallest set of most likely tokens whose probability mass reaches ``top_p``: a token is
    kept when the mass of the tokens ranked strictly above it is below ``top_p``. The top token is
    always kept, so a tiny ``top_p`` is greedy.
    """
    if top_p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = torch.softmax(sorted_logits, dim=-1)
    mass_above = torch.cumsum(probs, dim=-1) - probs
    drop_sorted = mass_above >= top_p
    drop_sorted[..., 0] = False
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, _NEG_INF)


def min_p_filter(logits: Tensor, min_p: float) -> Tensor:
    """Min-p filtering (Nguyen et al. 2024, "Turning Up the Heat: Min-p Sampling for Creative and
    Coherent LLM Outputs"): drop tokens with ``p < min_p * p_max``; ``min_p == 0`` is a no-op."""
    if min_p <= 0.0:
        return logits
    probs = torch.softmax(logits, dim=-1)
    threshold = probs.max(dim=-1, keepdim=True).values * min_p
    return logits.masked_fill(probs < threshold, _NEG_INF)


GREEDY_BELOW = 1e-6  # temperatures this small sample as 0 (greedy)


def watermark_context(params: SamplingParams, rows: Sequence[Sequence[int]]) -> Tensor | None:
    """The (R, h) context ids the watermark's green lists depend on (each row's last ``h`` ids: prompt and
    tokens so far), or None when ``params.watermark`` is off (then nothing is built)."""
    if params.watermark is None or not rows:
        return None  # no rows with the watermark on: watermark_logits says what is missing
    return context_rows(rows, params.watermark.context)


def watermark_logits(logits: Tensor, params: SamplingParams, context: Tensor | None) -> Tensor:
    """``logits`` with the green-list bias of ``params.watermark`` (``watermark.apply_watermark``); as is
    when it is off."""
    if params.watermark is None:
        return logits
    if context is None:
        raise ValueError("a watermarked step needs each row's context ids (see watermark_context)")
    return apply_watermark(logits, context, params.watermark)


def process_logits(logits: Tensor, params: SamplingParams, counts: Tensor | None,
                   context: Tensor | None = None) -> Tensor:
    """Apply penalties -> watermark -> temperature -> top-k -> top-p -> min-p (temperature must be > 0).

    The watermark's bias goes in before the temperature, as in the paper's reference code (a logits
    processor ahead of the HF warpers), so a temperature below 1 sharpens the bias too."""
    out = logits.float()
    if counts is not None:
        out = apply_penalties(
            out, counts, params.repetition_penalty, params.frequency_penalty, params.presence_penalty
        )
    out = watermark_logits(out, params, context)
    out = apply_temperature(out, params.temperature)
    out = top_k_filter(out, params.top_k)
    out = top_p_filter(out, params.top_p)
    return min_p_filter(out, params.min_p)


def sample_next(
    logits: Tensor, params: SamplingParams, counts: Tensor | None, rng: torch.Generator | None,
    context: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Pick one token per row of ``logits`` (B, V); returns ``(next_ids (B,), logprobs (B,))``.

    ``temperature == 0`` (or below ``GREEDY_BELOW``) is greedy: argmax after the penalties (no-ops at
    their defaults) and the watermark's bias (the paper's greedy variant), no randomness used. Otherwise
    the processors run in the order penalties -> watermark -> temperature -> top-k -> top-p -> min-p and
    one token is drawn with ``torch.multinomial(..., generator=rng)``. When ``rng`` lives on another
    device than the logits (a CPU generator for a GPU model) the draw happens on ``rng``'s device, so a
    seed gives the same draws for the same probabilities wherever the model runs. ``context`` (B, h) holds
    each row's last ids, which ``params.watermark`` needs (``watermark_context``); unused without it.

    The returned log-probability is that of the chosen token under the model's *raw* distribution
    (``log_softmax(logits)``, temperature 1, no penalties, filters or watermark): what best-of-n reranks on.
    """
    raw = logits.float()
    raw_logprobs = torch.log_softmax(raw, dim=-1)
    # below GREEDY_BELOW, logits / T overflows to inf (5e-324, 1e-40 ...); such a T is greedy but for ties
    if params.temperature < GREEDY_BELOW:
        scored = raw
        if counts is not None:
            scored = apply_penalties(
                raw, counts, params.repetition_penalty, params.frequency_penalty, params.presence_penalty
            )
        next_ids = torch.argmax(watermark_logits(scored, params, context), dim=-1)
    else:
        probs = torch.softmax(process_logits(raw, params, counts, context), dim=-1)
        if rng is not None and rng.device != probs.device:
            probs = probs.to(rng.device)
        next_ids = torch.multinomial(probs, 1, generator=rng).squeeze(-1).to(raw.device)
    return next_ids, raw_logprobs.gather(-1, next_ids.unsqueeze(-1)).squeeze(-1)
