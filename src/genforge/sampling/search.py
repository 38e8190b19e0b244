"""Batched refiners over a ``StepModel``: best-of-n sampling and beam search.

Both prefill the prompt as a batch of n identical rows (``init_state(n, ...)``), so ``reorder_state`` is
only ever called with an index of the batch's own size (a permutation with repeats), never to grow it.
Stop strings live at text level: the optional ``stop_at(ids) -> n_kept | None`` hook says whether a
row's generated ids already contain a stop string and, if so, how many of its tokens are kept (see
``stop.cut_at_stop``); ``generate_searched`` builds it from the codec.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ..types import Codec, Generation, SamplingParams, StepModel
from .decode import ProgressCallback, check_request, initial_counts, make_rng, prefill
from .processors import sample_next
from .stop import cut_at_stop, find_stop

StopAt = Callable[[list[int]], "int | None"]


@dataclass
class _Hyp:
    ids: list[int]  # generated ids, through the token that completed a stop string if any
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


def _sample_candidates(
    model: StepModel,
    prompt_ids: Sequence[int],
    params: SamplingParams,
    rng: torch.Generator,
    stop_at: StopAt | None,
    callback: ProgressCallback | None,
) -> list[tuple[list[int], list[float]]]:
    rows, n = params.best_of, params.max_tokens
    ids: list[list[int]] = [[] for _ in range(rows)]
    lps: list[list[float]] = [[] for _ in range(rows)]
    done = [False] * rows
    with torch.inference_mode():
        last, state = prefill(model, prompt_ids, rows, n)
        counts = initial_counts(prompt_ids, rows, model.vocab_size, last.device)
        arange = torch.arange(rows, device=last.device)
    tokens: torch.Tensor | None = None
    for i in range(n):
        with torch.inference_mode():
            if tokens is not None:
                logits, state = model.step(tokens.view(rows, 1), state)
                last = logits[:, -1].float()
            tokens, logprobs = sample_next(last, params, counts, rng)
            counts[arange, tokens] += 1
        for r, (tok, lp) in enumerate(zip(tokens.tolist(), logprobs.tolist())):
            if not done[r]:
                ids[r].append(tok)
                lps[r].append(lp)
                done[r] = stop_at is not None and stop_at(ids[r]) is not None
        if callback is not None:
            callback(i + 1, n)
        if all(done):
            break
    return list(zip(ids, lps))


def best_of_n(
    model: StepModel,
    prompt_ids: list[int],
    params: SamplingParams,
    rng: torch.Generator | None = None,
    stop_at: StopAt | None = None,
    callback: ProgressCallback | None = None,
) -> list[tuple[list[int], float, float]]:
    """Sample ``params.best_of`` candidates as one batch; return ``(ids, sum_logprob, mean_logprob)``
    sorted best-first by mean log-probability under the raw model (ties keep sampling order).

    The sample-and-rerank refinement (as in "best_of" of the OpenAI completions API; Adiwardana et al.
    2020, Meena, sample-and-rank). Each row runs to ``max_tokens``, or stops on its own once ``stop_at``
    reports a stop string (the batch ends when every row has); cutting and reranking on the kept tokens
    is the caller's job (``generate_searched``).
    """
    check_request(model, prompt_ids, params.max_tokens)
    rng = make_rng(params) if rng is None else rng
    out = []
    for ids, lps in _sample_candidates(model, prompt_ids, params, rng, stop_at, callback):
        total = float(sum(lps))
        out.append((ids, total, total / max(len(lps), 1)))
    return sorted(out, key=lambda c: -c[2])


def _beam(
    model: StepModel,
    prompt_ids: Sequence[int],
    params: SamplingParams,
    stop_at: StopAt | None,
    callback: ProgressCallback | None,
) -> list[_Hyp]:
    k, n, lp_pow = params.num_beams, params.max_tokens, params.length_penalty
    with torch.inference_mode():
        last, state = prefill(model, prompt_ids, k, n)
        vocab = last.shape[-1]
        # all rows hold the same prompt: only row 0 may expand at the first step
        beam_scores = torch.full((k,), float("-inf"), device=last.device)
        beam_scores[0] = 0.0
    seqs: list[list[int]] = [[] for _ in range(k)]
    seq_lps: list[list[float]] = [[] for _ in range(k)]
    finished: list[_Hyp] = []
    for t in range(n):
        with torch.inference_mode():
            logp = torch.log_softmax(last, dim=-1)
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
                finished.append(_Hyp(seq, lps, kept, kept_score(lps, kept, lp_pow)))
        if callback is not None:
            callback(t + 1, n)
        seqs = [seqs[p] + [tok] for p, tok, _, _ in live]
        seq_lps = [seq_lps[p] + [lp] for p, _, _, lp in live]
        if t == n - 1:
            finished += [_Hyp(s, ls, len(s), kept_score(ls, len(s), lp_pow)) for s, ls in zip(seqs, seq_lps)]
        if t == n - 1 or not live or len(finished) >= k:
            break
        pad = k - len(live)  # fewer live candidates than beams: dead rows with score -inf
        live += [(0, 0, float("-inf"), 0.0)] * pad
        seqs += [[] for _ in range(pad)]
        seq_lps += [[] for _ in range(pad)]
        with torch.inference_mode():
            index = torch.tensor([p for p, _, _, _ in live], dtype=torch.long, device=last.device)
            beam_scores = torch.tensor([v for _, _, v, _ in live], device=last.device)
            state = model.reorder_state(state, index)
            toks = torch.tensor([tok for _, tok, _, _ in live], dtype=torch.long, device=last.device)
            logits, state = model.step(toks.view(k, 1), state)
            last = logits[:, -1].float()
    return sorted(finished, key=lambda h: -h.score)[:k]


def beam_search(
    model: StepModel,
    prompt_ids: list[int],
    params: SamplingParams,
    stop_at: StopAt | None = None,
    callback: ProgressCallback | None = None,
) -> list[tuple[list[int], float]]:
    """Beam search with ``params.num_beams`` beams; returns ``(ids, score)`` best-first, at most n.

    The usual left-to-right formulation (Graves 2012, "Sequence Transduction with Recurrent Neural
    Networks"; Sutskever et al. 2014; length normalisation as in Wu et al. 2016, GNMT): keep the
    ``num_beams`` highest-scoring prefixes, expand each by every token, keep the best ``num_beams`` of
    the top ``2 * num_beams`` expansions, reordering the model state's rows with ``reorder_state``.
    ``score = sum(logprob) / len ** length_penalty`` under the raw model distribution; temperature,
    top-k/p, min-p and penalties are ignored, so it is deterministic. Without ``stop_at`` every beam runs
    ``max_tokens`` tokens. With it, a beam that completes a stop string is finished (its ids end with the
    token that completed it, its score covers the kept tokens, see ``kept_score``) and the search ends
    once ``num_beams`` beams have finished (early stopping) or at ``max_tokens``.
    """
    check_request(model, prompt_ids, params.max_tokens)
    return [(h.ids, h.score) for h in _beam(model, prompt_ids, params, stop_at, callback)]


def text_stop_at(codec: Codec, stops: Sequence[str]) -> StopAt | None:
    """The ``stop_at`` hook for ``stops`` under ``codec`` (None without stop strings)."""
    if not stops:
        return None

    def stop_at(ids: list[int]) -> int | None:
        if find_stop(codec.decode(ids), stops) < 0:
            return None
        return cut_at_stop(codec, ids, stops)[1]

    return stop_at


def generate_searched(
    model: StepModel,
    codec: Codec,
    prompt_ids: list[int],
    params: SamplingParams,
    rng: torch.Generator | None = None,
    callback: ProgressCallback | None = None,
) -> Generation:
    """``generate_text`` for ``best_of > 1`` or ``num_beams > 1``: the best candidate as a Generation.

    Each candidate is decoded and cut at its first stop string; best-of-n candidates are then reranked
    on the mean log-probability of their kept tokens (see ``kept_score``), beams on their beam score.
    """
    check_request(model, prompt_ids, params.max_tokens)
    stop_at = text_stop_at(codec, params.stop)
    if params.num_beams > 1:
        hyps = _beam(model, prompt_ids, params, stop_at, callback)
    else:
        rng = make_rng(params) if rng is None else rng
        hyps = []
        for ids, lps in _sample_candidates(model, prompt_ids, params, rng, stop_at, callback):
            n_kept = cut_at_stop(codec, ids, params.stop)[1]
            hyps.append(_Hyp(ids, lps, n_kept, kept_score(lps, n_kept, 1.0)))
        hyps.sort(key=lambda h: -h.score)
    best = hyps[0]
    text, n_kept, stopped = cut_at_stop(codec, best.ids, params.stop)
    return Generation(
        text=text,
        token_ids=best.ids[:n_kept],
        finish_reason="stop" if stopped else "length",
        logprob=float(sum(best.logprobs[:n_kept])),
    )
