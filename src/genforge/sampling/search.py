"""Batched refiners over a ``StepModel``: best-of-n sampling and beam search.

Both run on the token loop's pieces (``tokens``): the prompt is prefilled as a batch of n identical
rows, so ``reorder_state`` is only ever called with an index of the batch's own size (a permutation
with repeats), never to grow it; with ``slide`` both run past the model's context like
``tokens.stream_tokens``. A row ends early through the optional ``stop_at(ids) -> n_kept | None``
hook: it says whether a row's generated ids are finished (a stop string, an end-of-sequence token)
and, if so, how many of its tokens are kept. ``text.generate_text`` builds it from the codec.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ..types import SamplingParams, StepModel
from .tokens import (
    ProgressCallback,
    check_request,
    feed,
    make_rng,
    reorder_rows,
    sample_tokens,
    start_rows,
    watermark_context,
    watermark_logits,
)

StopAt = Callable[[list[int]], "int | None"]


@dataclass
class Hypothesis:
    """One finished candidate of best-of-n or beam search."""

    ids: list[int]  # generated ids, through the token that finished it (stop string, end of sequence)
    logprobs: list[float]  # per-token log-probabilities under the raw model distribution
    n_kept: int  # tokens kept after cutting at a stop string (len(ids) without one)
    score: float


def kept_score(logprobs: Sequence[float], n_kept: int, length_penalty: float) -> float:
    """``sum(logprobs[:m]) / m ** length_penalty`` with ``m = max(n_kept, 1)``.

    An empty completion (stop string at the very start) is scored on the token that began the stop
    string, so it competes on how likely the model was to stop at once, instead of scoring a free 0.
    """
    m = max(n_kept, 1)
    return float(sum(logprobs[:m])) / m**length_penalty


def sample_candidates(
    model: StepModel,
    prompt_ids: Sequence[int],
    params: SamplingParams,
    rng: torch.Generator,
    stop_at: StopAt | None = None,
    callback: ProgressCallback | None = None,
    slide: bool = False,
) -> list[Hypothesis]:
    """``params.best_of`` samples of the token loop in one batch, in sampling order, each cut by
    ``stop_at`` and scored by its kept tokens' mean log-probability; the request is not checked here."""
    rows = params.best_of
    ids: list[list[int]] = [[] for _ in range(rows)]
    lps: list[list[float]] = [[] for _ in range(rows)]
    kept: list[int | None] = [None] * rows
    steps = sample_tokens(model, prompt_ids, params, rng, rows, slide, callback)
    for tokens, logprobs in steps:
        for r, (tok, lp) in enumerate(zip(tokens.tolist(), logprobs.tolist())):
            if kept[r] is None:
                ids[r].append(tok)
                lps[r].append(lp)
                kept[r] = stop_at(ids[r]) if stop_at is not None else None
        if all(k is not None for k in kept):
            steps.close()
            break
    out = []
    for i, lp, k in zip(ids, lps, kept):
        n_kept = len(i) if k is None else k
        out.append(Hypothesis(i, lp, n_kept, kept_score(lp, n_kept, 1.0)))
    return out


def best_of_n(
    model: StepModel,
    prompt_ids: list[int],
    params: SamplingParams,
    rng: torch.Generator | None = None,
    stop_at: StopAt | None = None,
    callback: ProgressCallback | None = None,
    slide: bool = False,
) -> list[tuple[list[int], float, float]]:
    """Sample ``params.best_of`` candidates as one batch; return ``(ids, sum_logprob, mean_logprob)``
    sorted best-first by mean log-probability under the raw model (ties keep sampling order).

    The sample-and-rerank refinement (as in "best_of" of the OpenAI completions API; Adiwardana et al.
    2020, Meena, sample-and-rank). Each row runs to ``max_tokens``, or stops on its own once ``stop_at``
    reports it finished (the batch ends when every row has); cutting and reranking on the kept tokens
    is the caller's job (``text.generate_text``).
    """
    check_request(model, prompt_ids, params.max_tokens, slide)
    rng = make_rng(params) if rng is None else rng
    out = []
    for h in sample_candidates(model, prompt_ids, params, rng, stop_at, callback, slide):
        total = float(sum(h.logprobs))
        out.append((h.ids, total, total / max(len(h.logprobs), 1)))
    return sorted(out, key=lambda c: -c[2])


def beam_hypotheses(
    model: StepModel,
    prompt_ids: Sequence[int],
    params: SamplingParams,
    stop_at: StopAt | None = None,
    callback: ProgressCallback | None = None,
    slide: bool = False,
) -> list[Hypothesis]:
    """The finished beams of ``beam_search``, best-first; the request is not checked here."""
    k, n, lp_pow = params.num_beams, params.max_tokens, params.length_penalty
    with torch.inference_mode():
        run = start_rows(model, prompt_ids, k, params, slide)
        vocab = run.last.shape[-1]
        # all rows hold the same prompt: only row 0 may expand at the first step
        beam_scores = torch.full((k,), float("-inf"), device=run.last.device)
        beam_scores[0] = 0.0
    seqs: list[list[int]] = [[] for _ in range(k)]
    seq_lps: list[list[float]] = [[] for _ in range(k)]
    finished: list[Hypothesis] = []
    for t in range(n):
        with torch.inference_mode():
            # with a watermark the beams search the biased distribution (scores and logprobs under it)
            logp = torch.log_softmax(watermark_logits(run.last, params, watermark_context(params, run.ids)), dim=-1)
            top_vals, top_idx = torch.topk((beam_scores[:, None] + logp).flatten(), min(2 * k, k * vocab))
            parents_t, toks_t = top_idx // vocab, top_idx % vocab
            step_lps = logp[parents_t, toks_t].tolist()
        live: list[tuple[int, int, float, float]] = []  # (parent, token, running sum, token logprob)
        for rank, (p, tok, val, lp) in enumerate(
            zip(parents_t.tolist(), toks_t.tolist(), top_vals.tolist(), step_lps)
        ):
            if val == float("-inf"):
                break
            seq = seqs[p] + [tok]
            kept = stop_at(seq) if stop_at is not None else None
            if kept is None:
                live.append((p, tok, val, lp))
                if len(live) == k:
                    break
            elif rank < k:  # as in the usual formulation: a finished beam must rank in the top k
                lps = seq_lps[p] + [lp]
                finished.append(Hypothesis(seq, lps, kept, kept_score(lps, kept, lp_pow)))
        if callback is not None:
            callback(t + 1, n)
        seqs = [seqs[p] + [tok] for p, tok, _, _ in live]
        seq_lps = [seq_lps[p] + [lp] for p, _, _, lp in live]
        if t == n - 1:
            finished += [Hypothesis(s, ls, len(s), kept_score(ls, len(s), lp_pow)) for s, ls in zip(seqs, seq_lps)]
        if t == n - 1 or not live or len(finished) >= k:
            break
        pad = k - len(live)  # fewer live candidates than beams: dead rows with score -inf
        live += [(0, 0, float("-inf"), 0.0)] * pad
        seqs += [[] for _ in range(pad)]
        seq_lps += [[] for _ in range(pad)]
        with torch.inference_mode():
            beam_scores = torch.tensor([v for _, _, v, _ in live], device=run.last.device)
            reorder_rows(model, run, [p for p, _, _, _ in live])
            feed(model, run, torch.tensor([tok for _, tok, _, _ in live], dtype=torch.long))
    return sorted(finished, key=lambda h: -h.score)[:k]


def beam_search(
    model: StepModel,
    prompt_ids: list[int],
    params: SamplingParams,
    stop_at: StopAt | None = None,
    callback: ProgressCallback | None = None,
    slide: bool = False,
) -> list[tuple[list[int], float]]:
    """Beam search with ``params.num_beams`` beams; returns ``(ids, score)`` best-first, at most n.

    The usual left-to-right formulation (Graves 2012, "Sequence Transduction with Recurrent Neural
    Networks"; Sutskever et al. 2014; length normalisation as in Wu et al. 2016, GNMT): keep the
    ``num_beams`` highest-scoring prefixes, expand each by every token, keep the best ``num_beams`` of
    the top ``2 * num_beams`` expansions, reordering the model state's rows with ``reorder_state``.
    ``score = sum(logprob) / len ** length_penalty`` under the raw model distribution; temperature,
    top-k/p, min-p and penalties are ignored, so it is deterministic. With ``params.watermark`` the
    search runs over the watermarked distribution instead (log-softmax of the biased logits, each beam
    biased after its own previous tokens), the beam-search variant of Kirchenbauer et al. 2023, Sec. 6,
    which embeds the mark more strongly than sampling does at the same delta. Without ``stop_at`` every beam runs
    ``max_tokens`` tokens. With it, a beam that it reports finished is done (its ids end with the token
    that finished it, its score covers the kept tokens, see ``kept_score``) and the search ends once
    ``num_beams`` beams have finished (early stopping) or at ``max_tokens``.
    """
    check_request(model, prompt_ids, params.max_tokens, slide)
    return [(h.ids, h.score) for h in beam_hypotheses(model, prompt_ids, params, stop_at, callback, slide)]
