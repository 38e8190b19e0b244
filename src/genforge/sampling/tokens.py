"""The autoregressive token loop: prefill, step, penalty counts and ``sample_next``, once.

Streaming (``stream_tokens``), best-of-n and beam search (``search``), the server's continuous batcher
(``serve.engine``) and RL rollouts all run on the functions here. The loop knows token ids only; text
(stop strings, incremental UTF-8) sits on top of it in ``text``.

The prompt runs through ``model.step`` once (prefill); after that each new token is fed alone with the
returned state (the KV cache). A sequence may end at an end-of-sequence token (``eos_id``).

Sliding window (opt-in, ``slide=True``). A Transformer attends over at most ``model.max_len``
positions. nanoGPT's sampler keeps generating past that by cropping the input to the last
``block_size`` tokens and recomputing the whole window every step. Here the window slides only when
the cache is full: the most recent ``slide_keep(context)`` tokens are re-prefilled from position 0
into a fresh state and decoding continues one token at a time, so a slide costs one prefill every
``context - keep + 1`` tokens instead of a full forward pass per token. After a slide the logits equal
(to float rounding) those of a from-scratch forward pass over the kept tokens, for learned and rotary
positions alike (tested). See ``SLIDE_KEEP`` for the choice of ``keep``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import GenforgeError
from ..types import SamplingParams, State, StepModel
from .processors import sample_next, watermark_context, watermark_logits  # noqa: F401  (search uses the last)

ProgressCallback = Callable[[int, int], None]

# Fraction of the context kept when the window slides. Keeping more leaves the model more history
# (the window grows from keep back to the context, so it sees (keep + context) / 2 tokens on average)
# but slides more often (every context - keep + 1 tokens), each slide one prefill of keep tokens.
# benchmarks/sliding_window.py, bundled 256-token model, 2 threads, 7 alternating rounds on a shared
# 2-core machine: 1,000 tokens decode at 0.78x (1/2), 0.74x (3/4) and 0.66x (7/8) the rate of 200
# tokens (medians of paired ratios; nanoGPT's crop-and-recompute runs at 0.09x). 3/4 costs ~5% over
# 1/2 for 224 instead of 192 tokens of history on average (at least 192, not 128); 7/8 costs 11% more.
SLIDE_KEEP = 0.75


def slide_keep(context: int) -> int:
    """How many of the most recent tokens a slide keeps, for a model with a ``context``-token window."""
    return min(context, max(1, int(context * SLIDE_KEEP)))


def check_request(model: StepModel, prompt_ids: Sequence[int], max_tokens: int, slide: bool = False) -> None:
    """Raise ``GenforgeError`` unless the prompt is non-empty, in vocabulary and fits the context.

    Without ``slide`` the prompt plus ``max_tokens`` must fit the context; with it the prompt alone must.
    """
    n, ctx = len(prompt_ids), int(model.max_len)
    if n < 1:
        raise GenforgeError("the prompt is empty: give at least one token of prompt text")
    bad = [int(t) for t in prompt_ids if not 0 <= int(t) < model.vocab_size]
    if bad:
        raise GenforgeError(
            f"prompt token id {bad[0]} is outside the model's vocabulary of {model.vocab_size}: "
            "encode the prompt with the model's own codec"
        )
    if slide and n > ctx:
        raise GenforgeError(
            f"prompt has {n} tokens but the model's context is {ctx} tokens: shorten the prompt to at most "
            f"{ctx} tokens"
        )
    if not slide and n + max_tokens > ctx:
        fix = (
            f"lower max_tokens to {ctx - n} or shorten the prompt"
            if ctx - n >= 1
            else f"shorten the prompt to at most {ctx - 1} tokens"
        )
        raise GenforgeError(
            f"prompt has {n} tokens and max_tokens is {max_tokens}, but the model's context is "
            f"{ctx} tokens: {fix}"
        )


def model_device(model: StepModel) -> torch.device:
    """The device the model's tensors live on (CPU for a model without parameters)."""
    if isinstance(model, torch.nn.Module):
        for t in model.parameters():
            return t.device
        for t in model.buffers():
            return t.device
    device = getattr(model, "device", None)
    return torch.device(device) if device is not None else torch.device("cpu")


def make_rng(params: SamplingParams) -> torch.Generator:
    """A CPU generator seeded from ``params.seed`` (nondeterministically when it is None)."""
    rng = torch.Generator()
    if params.seed is None:
        rng.seed()
    else:
        rng.manual_seed(params.seed)
    return rng


def penalty_counts(
    params: SamplingParams, prompt_ids: Sequence[int], rows: int, vocab_size: int, device: torch.device
) -> Tensor | None:
    """(rows, V) occurrence counts of the prompt tokens, the starting point of the penalties; None when
    no penalty is on (``sample_next`` then skips them). The prompt counts: a token seen only in the
    prompt is penalised too, as in the OpenAI API."""
    if params.repetition_penalty == 1.0 and not params.frequency_penalty and not params.presence_penalty:
        return None
    ids = torch.tensor(list(prompt_ids), dtype=torch.long, device=device)
    counts = torch.bincount(ids, minlength=vocab_size).to(torch.float32)
    return counts.unsqueeze(0).repeat(rows, 1)


def sample_step(
    logits: Tensor, params: SamplingParams, counts: Tensor | None, rng: torch.Generator | None,
    history: Sequence[Sequence[int]] = (),
) -> tuple[Tensor, Tensor]:
    """``sample_next`` over (R, V) logits, then count the chosen tokens in ``counts`` (in place).

    ``history``: each row's ids so far (prompt and tokens), whose last ones seed the watermark's green
    lists when ``params.watermark`` is on: every path through the loop (streaming, best-of-n, molecules,
    the server's rows) watermarks each row after its own previous tokens."""
    tokens, logprobs = sample_next(logits, params, counts, rng, watermark_context(params, history))
    if counts is not None:
        counts[torch.arange(len(tokens), device=counts.device), tokens.to(counts.device)] += 1
    return tokens, logprobs


def prefill(model: StepModel, ids: Sequence[Sequence[int]], max_len: int) -> tuple[Tensor, State]:
    """Run ``ids`` (R rows of T tokens) through a fresh state of ``max_len`` positions in one ``step``;
    return the last position's logits (R, V) as float32, and the state."""
    state = model.init_state(len(ids), max_len)
    logits, state = model.step(torch.tensor(ids, dtype=torch.long, device=model_device(model)), state)
    return logits[:, -1].float(), state


def refill(model: StepModel, histories: Sequence[Sequence[int]], keep: int, max_len: int) -> State:
    """A slide: a fresh state holding, from position 0, the ``keep - 1`` tokens before the last token of
    each history (rows of equal length). The caller then feeds the last token as usual, so the model
    sees the ``keep`` most recent tokens."""
    tails = [list(h[len(h) - keep:len(h) - 1]) for h in histories]
    if not tails[0]:
        return model.init_state(len(histories), max_len)
    return prefill(model, tails, max_len)[1]


@dataclass
class Rows:
    """R sequences decoded in lockstep (one prompt, R continuations): the loop's state between steps."""

    state: State  # the model's state, holding ``length`` positions of every row
    last: Tensor  # (R, V) float logits for each row's next token
    counts: Tensor | None  # (R, V) token counts of prompt + output for the penalties; None without them
    ids: list[list[int]]  # each row's prompt and the tokens fed so far (a slide re-prefills from them)
    length: int  # positions the state holds
    capacity: int  # positions the state can hold
    keep: int | None  # tokens kept when the window slides; None: a full cache is an error


def start_rows(model: StepModel, prompt_ids: Sequence[int], rows: int, params: SamplingParams,
               slide: bool = False) -> Rows:
    """Prefill ``rows`` copies of the prompt for up to ``params.max_tokens`` new tokens each."""
    n, ctx = len(prompt_ids), int(model.max_len)
    capacity = min(n + params.max_tokens, ctx)
    last, state = prefill(model, [list(prompt_ids)] * rows, capacity)
    counts = penalty_counts(params, prompt_ids, rows, model.vocab_size, last.device)
    return Rows(state, last, counts, [list(prompt_ids) for _ in range(rows)], n, capacity,
                slide_keep(ctx) if slide else None)


def feed(model: StepModel, run: Rows, tokens: Tensor) -> None:
    """Feed one token per row (R,) and leave the logits for the next in ``run.last``; slide first when
    the state is full and sliding is on."""
    for row, t in zip(run.ids, tokens.tolist()):
        row.append(t)
    if run.length + 1 > run.capacity:
        if run.keep is None:
            raise GenforgeError(f"the model's state holds {run.capacity} positions and is full")
        run.state, run.length = refill(model, run.ids, run.keep, run.capacity), run.keep - 1
    logits, run.state = model.step(tokens.view(-1, 1).to(run.last.device), run.state)
    run.last, run.length = logits[:, -1].float(), run.length + 1


def reorder_rows(model: StepModel, run: Rows, index: Sequence[int]) -> None:
    """Make row i a copy of row ``index[i]`` (beam search): state, logits, counts and ids."""
    idx = torch.tensor(list(index), dtype=torch.long, device=run.last.device)
    run.state = model.reorder_state(run.state, idx)
    run.last = run.last.index_select(0, idx)
    if run.counts is not None:
        run.counts = run.counts.index_select(0, idx)
    run.ids = [list(run.ids[i]) for i in index]


def sample_tokens(
    model: StepModel,
    prompt_ids: Sequence[int],
    params: SamplingParams,
    rng: torch.Generator,
    rows: int = 1,
    slide: bool = False,
    callback: ProgressCallback | None = None,
) -> Iterator[tuple[Tensor, Tensor]]:
    """The loop: yield ``(tokens (R,), logprobs (R,))`` for ``params.max_tokens`` steps over ``rows``
    continuations of the prompt. The request is not checked here (see ``check_request``).

    Each step runs only when the next tokens are asked for, so a consumer that stops early (a stop
    string, an end-of-sequence token) wastes no forward pass. ``logprobs`` are under the raw model
    distribution (see ``sample_next``). ``callback(done, max_tokens)`` is called after each step, before
    it is yielded. The tensor work runs under ``torch.inference_mode()``, entered per step and never held
    across a ``yield``, so the caller's code is not put in inference mode.
    """
    n = params.max_tokens
    with torch.inference_mode():
        run = start_rows(model, prompt_ids, rows, params, slide)
    tokens: Tensor | None = None
    for i in range(n):
        with torch.inference_mode():
            if tokens is not None:
                feed(model, run, tokens)
            tokens, logprobs = sample_step(run.last, params, run.counts, rng, run.ids)
        if callback is not None:
            callback(i + 1, n)
        yield tokens, logprobs


def stream_tokens(
    model: StepModel,
    prompt_ids: list[int],
    params: SamplingParams,
    rng: torch.Generator | None = None,
    callback: ProgressCallback | None = None,
    eos_id: int | None = None,
    slide: bool = False,
) -> Iterator[tuple[int, float]]:
    """Sample up to ``params.max_tokens`` tokens after ``prompt_ids``, yielding ``(token_id, logprob)``.

    Batch 1. The request is checked here, at call time (not at the first ``next``). With ``eos_id`` the
    stream ends after yielding that token. With ``slide`` it may run past the model's context (see the
    module's docstring); without, prompt + ``max_tokens`` must fit. Sampling parameters ``best_of`` and
    ``num_beams`` are ignored here (see ``text.generate_text``).
    """
    check_request(model, prompt_ids, params.max_tokens, slide)
    rng = make_rng(params) if rng is None else rng
    return _one_row(sample_tokens(model, list(prompt_ids), params, rng, 1, slide, callback), eos_id)


def _one_row(steps: Iterator[tuple[Tensor, Tensor]], eos_id: int | None) -> Iterator[tuple[int, float]]:
    try:
        for tokens, logprobs in steps:
            token = int(tokens[0])
            yield token, float(logprobs[0])
            if token == eos_id:
                return
    finally:
        steps.close()  # type: ignore[attr-defined]


def sample_sequences(
    model: StepModel,
    prompt_ids: Sequence[int],
    n: int,
    params: SamplingParams,
    eos_id: int,
    rng: torch.Generator | None = None,
    batch_size: int = 256,
    callback: ProgressCallback | None = None,
    slide: bool = False,
) -> list[list[int]]:
    """``n`` independent continuations of one prompt, each ending at ``eos_id`` (kept) or after
    ``params.max_tokens`` tokens: the many-sample loop of molecule generation and RL rollouts.

    Rows run ``batch_size`` at a time through ``sample_tokens``; a batch stops as soon as every row has
    ended. ``callback(done, n)`` reports finished sequences. With one ``rng`` the result depends only on the
    seed, ``n`` and ``batch_size``. ``slide``: run past the model's context (music pieces do).
    """
    check_request(model, prompt_ids, params.max_tokens, slide)
    if n < 1 or batch_size < 1:
        raise GenforgeError(f"n={n} and batch_size={batch_size} must both be >= 1")
    rng = make_rng(params) if rng is None else rng
    out: list[list[int]] = []
    while len(out) < n:
        rows = min(batch_size, n - len(out))
        seqs = torch.zeros(rows, params.max_tokens, dtype=torch.long)
        lengths = torch.full((rows,), params.max_tokens)
        done = torch.zeros(rows, dtype=torch.bool)
        steps = sample_tokens(model, list(prompt_ids), params, rng, rows, slide)
        try:
            for t, (tokens, _) in enumerate(steps):
                tokens = tokens.cpu()
                seqs[:, t] = tokens
                ended = (tokens == eos_id) & ~done
                lengths[ended] = t + 1
                done |= ended
                if bool(done.all()):
                    break
        finally:
            steps.close()
        out.extend(row[:k] for row, k in zip(seqs.tolist(), lengths.tolist()))
        if callback is not None:
            callback(len(out), n)
    return out
