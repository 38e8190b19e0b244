"""The autoregressive loop: prefill the prompt once, then one token at a time from the model's state.

``stream_tokens`` yields ``(token_id, logprob)``; ``stream_text`` turns that into stop-string-safe text
pieces; ``generate_text`` runs the same machinery to the end (or dispatches to best-of-n / beam search,
see ``search``) and returns a ``Generation``. The tensor work runs under ``torch.inference_mode()``,
entered per step and never held across a ``yield``, so the caller's code is not put in inference mode.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..errors import GenforgeError
from ..types import Codec, Generation, SamplingParams, State, StepModel
from .processors import sample_next
from .stop import StopMatcher

ProgressCallback = Callable[[int, int], None]


def check_request(model: StepModel, prompt_ids: Sequence[int], max_tokens: int) -> None:
    """Raise ``GenforgeError`` unless the prompt is non-empty, in vocabulary and fits with max_tokens."""
    n, ctx = len(prompt_ids), int(model.max_len)
    if n < 1:
        raise GenforgeError("the prompt is empty: give at least one token of prompt text")
    bad = [int(t) for t in prompt_ids if not 0 <= int(t) < model.vocab_size]
    if bad:
        raise GenforgeError(
            f"prompt token id {bad[0]} is outside the model's vocabulary of {model.vocab_size}: "
            "encode the prompt with the model's own codec"
        )
    if n + max_tokens > ctx:
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


def initial_counts(prompt_ids: Sequence[int], rows: int, vocab_size: int, device: torch.device) -> Tensor:
    """(rows, V) occurrence counts of the prompt tokens, the starting point of the penalties."""
    ids = torch.tensor(list(prompt_ids), dtype=torch.long, device=device)
    counts = torch.bincount(ids, minlength=vocab_size).to(torch.float32)
    return counts.unsqueeze(0).repeat(rows, 1)


def prefill(model: StepModel, prompt_ids: Sequence[int], rows: int, max_tokens: int) -> tuple[Tensor, State]:
    """Run the prompt (repeated ``rows`` times) through ``model.step`` once; return last logits (rows, V)."""
    device = model_device(model)
    state = model.init_state(rows, len(prompt_ids) + max_tokens)
    ids = torch.tensor([list(prompt_ids)] * rows, dtype=torch.long, device=device)
    logits, state = model.step(ids, state)
    return logits[:, -1].float(), state


def stream_tokens(
    model: StepModel,
    prompt_ids: list[int],
    params: SamplingParams,
    rng: torch.Generator | None = None,
    callback: ProgressCallback | None = None,
) -> Iterator[tuple[int, float]]:
    """Sample up to ``params.max_tokens`` tokens after ``prompt_ids``, yielding ``(token_id, logprob)``.

    Batch 1. The request is checked here, at call time (not at the first ``next``). The prompt runs
    through ``model.step`` once (prefill), then each new token is fed alone with the returned state (the
    KV cache); the next step only runs when the next token is asked for, so a consumer that stops early
    (a stop string) wastes no forward pass. ``logprob`` is under the raw model distribution (see
    ``sample_next``). ``callback(done, max_tokens)`` is called after each token, before it is yielded.
    Sampling parameters ``best_of`` and ``num_beams`` are ignored here (see ``generate_text``).
    """
    check_request(model, prompt_ids, params.max_tokens)
    if rng is None:
        rng = make_rng(params)
    return _token_loop(model, list(prompt_ids), params, rng, callback)


def _token_loop(
    model: StepModel,
    prompt_ids: list[int],
    params: SamplingParams,
    rng: torch.Generator,
    callback: ProgressCallback | None,
) -> Iterator[tuple[int, float]]:
    n = params.max_tokens
    with torch.inference_mode():
        last, state = prefill(model, prompt_ids, 1, n)
        counts = initial_counts(prompt_ids, 1, model.vocab_size, last.device)
    token: Tensor | None = None
    for i in range(n):
        with torch.inference_mode():
            if token is not None:
                logits, state = model.step(token.view(1, 1), state)
                last = logits[:, -1].float()
            token, logprob = sample_next(last, params, counts, rng)
            counts[0, token] += 1
        if callback is not None:
            callback(i + 1, n)
        yield int(token.item()), float(logprob.item())


@dataclass
class _Record:
    """What a text run produced besides its text pieces (filled in as the run goes)."""

    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    finish_reason: str = "length"
    n_kept: int = 0


def _text_pieces(
    model: StepModel,
    codec: Codec,
    prompt_ids: list[int],
    params: SamplingParams,
    rng: torch.Generator | None,
    callback: ProgressCallback | None,
    record: _Record,
) -> Iterator[str]:
    """Shared by ``stream_text`` and ``generate_text``: tokens -> stream decoder -> stop matcher."""
    tokens = stream_tokens(model, prompt_ids, params, rng, callback)
    return _pieces_loop(tokens, codec, params.stop, record)


def _pieces_loop(
    tokens: Iterator[tuple[int, float]], codec: Codec, stops: tuple[str, ...], record: _Record
) -> Iterator[str]:
    decoder, matcher = codec.decoder(), StopMatcher(stops)
    produced: list[int] = []  # decoded text length after each token
    shown = 0  # length of the text released so far
    stopped = False
    try:
        for token_id, logprob in tokens:
            record.token_ids.append(token_id)
            record.logprobs.append(logprob)
            piece = decoder.push(token_id)
            produced.append((produced[-1] if produced else 0) + len(piece))
            safe, stopped = matcher.push(piece)
            shown += len(safe)
            if safe:
                yield safe
            if stopped:
                break
        if not stopped:
            tail = decoder.flush()
            if tail and produced:
                produced[-1] += len(tail)
            safe, stopped = matcher.push(tail)
            rest = "" if stopped else matcher.flush()
            shown += len(safe) + len(rest)
            if safe + rest:
                yield safe + rest
    finally:
        if hasattr(tokens, "close"):
            tokens.close()  # type: ignore[union-attr]
    if stopped:
        record.finish_reason = "stop"
        # the shortest prefix of tokens whose text covers what was shown (see stop.cut_at_stop)
        record.n_kept = (
            0 if shown == 0 else next((i + 1 for i, p in enumerate(produced) if p >= shown), len(produced))
        )
    else:
        record.finish_reason = "length"
        record.n_kept = len(record.token_ids)


def _check_streamable(params: SamplingParams) -> None:
    if params.best_of > 1 or params.num_beams > 1:
        raise GenforgeError(
            f"streaming needs best_of=1 and num_beams=1 (got best_of={params.best_of}, "
            f"num_beams={params.num_beams}): use generate_text, or set both to 1"
        )


def stream_text(
    model: StepModel,
    codec: Codec,
    prompt: str,
    params: SamplingParams,
    rng: torch.Generator | None = None,
    callback: ProgressCallback | None = None,
) -> Iterator[str]:
    """Generate text after ``prompt`` and yield it in pieces as soon as they are safe to show.

    Text is never shown before it is known not to start a stop string; generation ends at the first
    stop string (which is not shown) or after ``params.max_tokens`` tokens. The concatenated pieces equal
    ``generate_text(...).text`` for the same seed. Raises ``GenforgeError`` at call time for a bad request
    or when ``best_of`` or ``num_beams`` is above 1.
    """
    _check_streamable(params)
    prompt_ids = codec.encode(prompt)
    return _text_pieces(model, codec, prompt_ids, params, rng, callback, _Record())


def generate_text(
    model: StepModel,
    codec: Codec,
    prompt: str,
    params: SamplingParams,
    rng: torch.Generator | None = None,
    callback: ProgressCallback | None = None,
) -> Generation:
    """Generate a whole completion of ``prompt`` and return it as a ``Generation``.

    ``best_of > 1`` samples that many candidates in one batch and keeps the best by mean log-probability
    (``search.best_of_n``); ``num_beams > 1`` runs beam search (``search.beam_search``). Otherwise this
    consumes exactly what ``stream_text`` yields. ``token_ids`` and ``logprob`` cover the kept tokens:
    those needed to produce ``text`` (a token straddling the start of the stop string counts as kept).
    """
    prompt_ids = codec.encode(prompt)
    if params.best_of > 1 or params.num_beams > 1:
        from .search import generate_searched  # search imports this module

        return generate_searched(model, codec, prompt_ids, params, rng, callback)
    record = _Record()
    text = "".join(_text_pieces(model, codec, prompt_ids, params, rng, callback, record))
    kept = record.token_ids[: record.n_kept]
    return Generation(
        text=text,
        token_ids=kept,
        finish_reason=record.finish_reason,
        logprob=float(sum(record.logprobs[: record.n_kept])),
    )
