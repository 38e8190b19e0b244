"""Speculative decoding: a cheap proposer guesses k tokens, the target checks them all in one pass.

Leviathan, Kalman & Matias 2023 ("Fast inference from transformers via speculative decoding") and Chen
et al. 2023 ("Accelerating large language model decoding with speculative sampling"). Each round:

1. the proposer drafts ``k`` tokens d_1..d_k with their distributions q_1..q_k: a small *draft model*
   in the same codec (``ModelDraft``), or *prompt lookup* (``LookupDraft``, no second model: the
   tokens that followed the latest earlier occurrence of the sequence's last n-gram, Saxena 2023);
2. the target runs [pending tokens, d_1..d_k] through its KV cache in one pass, giving p_1..p_{k+1};
3. d_i is kept with probability min(1, p_i(d_i) / q_i(d_i)); at the first rejection a token is drawn
   from norm(max(0, p_i - q_i)) instead and the round ends; when all k are kept, one more is drawn
   from p_{k+1}. Both caches roll back to the kept tokens (a KV cache only moves its position).

This keeps the target's distribution exactly: every emitted token is distributed as plain sampling
from p would be (the papers' theorem; tested against the closed form). At temperature 0 p and q are
one-hot on their argmax, so a draft token is kept iff it is the target's greedy choice and the output
is token for token the plain greedy output (tested). p and q are the distributions after temperature,
top-k, top-p and min-p (``processors.process_logits``); penalties and the watermark depend on every
earlier token and are not supported here (a clear error). Both models must be Transformers (their
caches roll back) and the draft must share the target's codec (the pipeline checks the codec).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..errors import GenforgeError
from ..types import Codec, Generation, SamplingParams, StepModel
from .processors import GREEDY_BELOW, process_logits
from .tokens import check_request, make_rng


@dataclass
class SpecStats:
    """What a speculative run did: rounds, tokens drafted and kept, target passes."""

    rounds: int = 0
    drafted: int = 0
    accepted: int = 0
    emitted: int = 0
    logprobs: list[float] = field(default_factory=list)  # of each emitted token under the target (raw)

    @property
    def acceptance(self) -> float:
        return self.accepted / self.drafted if self.drafted else 0.0

    @property
    def tokens_per_pass(self) -> float:
        return self.emitted / self.rounds if self.rounds else 0.0


def distribution(logits: Tensor, params: SamplingParams) -> Tensor:
    """(..., V) probabilities that ``sample_next`` draws from at a temperature above zero (greedy rounds
    compare argmaxes instead)."""
    raw = logits.float()
    flat = raw.reshape(-1, raw.shape[-1])
    return torch.softmax(process_logits(flat, params, None, None), dim=-1).view_as(raw)


def _draw(probs: Tensor, rng: torch.Generator | None) -> int:
    return int(torch.multinomial(probs.cpu(), 1, generator=rng))


def accept_or_resample(p: Tensor, q: Tensor | None, token: int, rng: torch.Generator | None,
                       greedy: bool) -> tuple[bool, int]:
    """The rejection rule for one drafted ``token``: (kept?, the token to emit). ``p``, ``q``: (V,) target and
    draft distributions (``q`` None: a deterministic proposer, one-hot on ``token``)."""
    if greedy:
        best = int(p.argmax())
        return best == token, best
    qt = 1.0 if q is None else float(q[token])
    pt = float(p[token])
    u = float(torch.rand((), generator=rng))
    if qt > 0 and u < min(1.0, pt / qt):
        return True, token
    if q is None:
        q = torch.zeros_like(p)
        q[token] = 1.0
    residual = (p - q).clamp(min=0)
    total = float(residual.sum())
    return False, (_draw(residual / total, rng) if total > 0 else _draw(p, rng))


class ModelDraft:
    """A small model in the target's codec drafts ``k`` tokens by sampling (its cache rolls back)."""

    def __init__(self, model: StepModel) -> None:
        if not hasattr(model, "verify"):
            raise GenforgeError(f"speculative decoding needs a Transformer draft model (got {type(model).__name__})")
        self.model = model

    def start(self, prompt: Sequence[int], max_len: int) -> None:
        self.state = self.model.init_state(1, max_len)
        self.fed = 0

    @torch.no_grad()
    def propose(self, seq: list[int], k: int, params: SamplingParams, rng: torch.Generator | None,
                greedy: bool) -> tuple[list[int], Tensor | None]:
        dev = self.state.k.device
        logits, _ = self.model.step(torch.tensor([seq[self.fed:]], device=dev), self.state)
        self.fed = len(seq)
        out, qs = [], []
        for i in range(k):
            if greedy:  # the argmax alone: no distribution to build
                t = int(logits[0, -1].argmax())
            else:
                q = distribution(logits[0, -1], params)
                t = _draw(q, rng)
                qs.append(q)
            out.append(t)
            if i + 1 < k:
                logits, _ = self.model.step(torch.tensor([[t]], device=dev), self.state)
                self.fed += 1
        return out, torch.stack(qs) if qs else None

    def rollback(self, keep: int) -> None:
        """Forget every position past the first ``keep`` tokens of the sequence."""
        self.fed = min(self.fed, keep)
        self.state.pos = self.fed


class LookupDraft:
    """Prompt lookup: the ``k`` tokens after the latest earlier match of the last n-gram (n from ``ngram``
    down to 1), searched in the prompt and what was generated; none when nothing matches."""

    def __init__(self, ngram: int = 3) -> None:
        if ngram < 1:
            raise GenforgeError(f"prompt lookup needs an n-gram of at least 1 token, got {ngram}")
        self.ngram = ngram

    def start(self, prompt: Sequence[int], max_len: int) -> None:
        pass

    def propose(self, seq: list[int], k: int, params: SamplingParams, rng: torch.Generator | None,
                greedy: bool) -> tuple[list[int], Tensor | None]:
        for n in range(min(self.ngram, len(seq) - 1), 0, -1):
            tail = seq[-n:]
            for start in range(len(seq) - n - 1, -1, -1):
                if seq[start:start + n] == tail:
                    follow = seq[start + n:start + n + k]
                    if follow:
                        return follow, None
        return [], None

    def rollback(self, keep: int) -> None:
        pass


@torch.no_grad()
def speculative_tokens(target: StepModel, prompt_ids: Sequence[int], params: SamplingParams, eos_id: int | None,
                       rng: torch.Generator | None, draft: ModelDraft | LookupDraft, k: int = 4,
                       stats: SpecStats | None = None) -> list[int]:
    """The tokens generated after ``prompt_ids`` (up to ``params.max_tokens``, ending at ``eos_id``), drawn
    from the target's distribution with ``draft`` proposing up to ``k`` at a time (one row). Each token's
    log-probability under the target's raw distribution goes to ``stats.logprobs``."""
    if not hasattr(target, "verify"):
        raise GenforgeError(f"speculative decoding needs a Transformer target (got {type(target).__name__})")
    if params.repetition_penalty != 1.0 or params.frequency_penalty or params.presence_penalty or params.watermark:
        raise GenforgeError("speculative decoding does not combine with penalties or the watermark: turn them off "
                            "or decode without a draft")
    if not 1 <= k <= 64:
        raise GenforgeError(f"speculative k={k} is out of range: draft 1 .. 64 tokens a round")
    prompt = list(prompt_ids)
    check_request(target, prompt, params.max_tokens)
    ctx = len(prompt) + params.max_tokens  # drafts shrink near the end: the caches never need more
    if isinstance(draft, ModelDraft):
        check_request(draft.model, prompt, params.max_tokens)
    stats = stats if stats is not None else SpecStats()
    greedy = params.temperature < GREEDY_BELOW
    state = target.init_state(1, ctx)
    dev = state.k.device
    draft.start(prompt, ctx)
    seq, fed, out = list(prompt), 0, []
    while len(out) < params.max_tokens:
        room = min(k, params.max_tokens - len(out) - 1, ctx - len(seq) - 1)
        drafted, qs = draft.propose(seq, room, params, rng, greedy) if room > 0 else ([], None)
        logits = target.verify(torch.tensor([seq[fed:] + drafted], device=dev), state)[0, -len(drafted) - 1:]
        if greedy:  # a draft token is kept while it is the target's argmax (one comparison for the round)
            best = logits.argmax(-1).tolist()
            kept = next((i for i, t in enumerate(drafted) if t != best[i]), len(drafted))
            nxt = best[kept]
        else:
            ps = distribution(logits, params)
            kept, nxt = 0, None
            for i, t in enumerate(drafted):
                ok, emit = accept_or_resample(ps[i], None if qs is None else qs[i], t, rng, greedy)
                if not ok:
                    nxt = emit
                    break
                kept += 1
            if nxt is None:
                nxt = _draw(ps[len(drafted)], rng)
        new = drafted[:kept] + [nxt]
        raw = torch.log_softmax(logits[:len(new)].float(), -1)
        stats.logprobs += raw[torch.arange(len(new)), torch.tensor(new)].tolist()
        stats.rounds += 1
        stats.drafted += len(drafted)
        stats.accepted += kept
        seq += new
        fed = len(seq) - 1  # the target holds everything but the last token, which the next round feeds
        state.pos = fed
        draft.rollback(fed)
        done = 0
        for t in new:
            out.append(t)
            done += 1
            if t == eos_id or len(out) == params.max_tokens:
                break
        stats.emitted += done
        del stats.logprobs[len(stats.logprobs) - len(new) + done:]
        if out[-1] == eos_id:
            break
    return out


def speculative_text(target: StepModel, codec: Codec, prompt: str, params: SamplingParams, eos_id: int | None,
                     draft: ModelDraft | LookupDraft, k: int = 4, stats: SpecStats | None = None) -> Generation:
    """``speculative_tokens`` as a ``Generation``: decoded, cut at the first stop string or the end token."""
    from .text import cut_text

    stats = stats if stats is not None else SpecStats()
    rng = make_rng(params)
    ids = speculative_tokens(target, codec.encode(prompt), params, eos_id, rng, draft, k, stats)
    text, n_kept, reason = cut_text(codec, ids, params.stop, eos_id)
    return Generation(text=text, token_ids=ids[:n_kept], finish_reason=reason,
                      logprob=float(sum(stats.logprobs[:n_kept])))
