"""Text on top of the token loop: incremental UTF-8 decoding, stop strings, end of sequence.

``stream_text`` yields text pieces as soon as they are safe to show (never the start of a stop
string, never half a UTF-8 character); ``generate_text`` runs the same machinery to the end, or
best-of-n / beam search (``search``), and returns a ``Generation``. Both take ``eos_id`` (the codec's
end-of-sequence token, see ``eos_id``) and ``slide`` (run past the model's context, see ``tokens``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch

from ..errors import GenforgeError
from ..types import Codec, Generation, SamplingParams, StepModel
from .search import StopAt, beam_hypotheses, sample_candidates
from .stop import StopMatcher, cut_at_stop
from .tokens import ProgressCallback, check_request, make_rng, stream_tokens

END_OF_TEXT = "<|endoftext|>"  # GPT-2's document separator, in every genforge BPE codec by default


def eos_id(codec: Codec) -> int | None:
    """The id of the codec's end-of-sequence token: its ``eos_id`` (SMILES), ``<|endoftext|>`` (BPE), or
    None (character codecs)."""
    if isinstance(getattr(codec, "eos_id", None), int):
        return int(codec.eos_id)  # type: ignore[attr-defined]
    if END_OF_TEXT in getattr(codec, "special_tokens", ()):
        return int(codec.token_to_id(END_OF_TEXT))  # type: ignore[attr-defined]
    return None


def cut_text(codec: Codec, ids: Sequence[int], stops: Sequence[str], eos: int | None) -> tuple[str, int, str]:
    """Decode a finished token sequence: ``(text, n_kept, finish_reason)``.

    The text ends before the first stop string (``stop.cut_at_stop``; ``n_kept`` counts the tokens that
    produce it) or at an end-of-sequence token as the last id (kept in ``n_kept``, not in the text).
    """
    ended = eos is not None and len(ids) > 0 and ids[-1] == eos
    body = list(ids[:-1]) if ended else list(ids)
    text, n_kept, stopped = cut_at_stop(codec, body, stops)
    if stopped:
        return text, n_kept, "stop"
    return text, len(ids), "eos" if ended else "length"


def text_stop_at(codec: Codec, stops: Sequence[str], eos: int | None = None) -> StopAt | None:
    """The ``search`` hook for ``stops`` and ``eos`` under ``codec`` (None without either)."""
    if not stops and eos is None:
        return None

    def stop_at(ids: list[int]) -> int | None:
        if eos is not None and ids[-1] == eos:
            return cut_text(codec, ids, stops, eos)[1]
        if not stops:
            return None
        _, n_kept, reason = cut_text(codec, ids, stops, None)
        return n_kept if reason == "stop" else None

    return stop_at


@dataclass
class _Record:
    """What a text run produced besides its text pieces (filled in as the run goes)."""

    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    finish_reason: str = "length"
    n_kept: int = 0


def _pieces(
    tokens: Iterator[tuple[int, float]], codec: Codec, stops: tuple[str, ...], eos: int | None, record: _Record
) -> Iterator[str]:
    """Tokens -> stream decoder -> stop matcher; fills ``record`` as it goes."""
    decoder, matcher = codec.decoder(), StopMatcher(stops)
    produced: list[int] = []  # decoded text length after each token
    shown = 0  # length of the text released so far
    stopped = ended = False
    try:
        for token_id, logprob in tokens:
            record.token_ids.append(token_id)
            record.logprobs.append(logprob)
            if token_id == eos:  # the end of the sequence: kept as a token, never decoded into text
                ended = True
                break
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
        record.finish_reason = "eos" if ended else "length"
        record.n_kept = len(record.token_ids)


def _text_pieces(
    model: StepModel,
    codec: Codec,
    prompt: str,
    params: SamplingParams,
    rng: torch.Generator | None,
    callback: ProgressCallback | None,
    eos: int | None,
    slide: bool,
    record: _Record,
) -> Iterator[str]:
    tokens = stream_tokens(model, codec.encode(prompt), params, rng, callback, eos, slide)
    return _pieces(tokens, codec, params.stop, eos, record)


def stream_text(
    model: StepModel,
    codec: Codec,
    prompt: str,
    params: SamplingParams,
    rng: torch.Generator | None = None,
    callback: ProgressCallback | None = None,
    eos_id: int | None = None,
    slide: bool = False,
) -> Iterator[str]:
    """Generate text after ``prompt`` and yield it in pieces as soon as they are safe to show.

    Text is never shown before it is known not to start a stop string; generation ends at the first
    stop string (which is not shown), at the token ``eos_id`` (not shown either) or after
    ``params.max_tokens`` tokens. The concatenated pieces equal ``generate_text(...).text`` for the same
    seed. Raises ``GenforgeError`` at call time for a bad request or when ``best_of`` or ``num_beams`` is
    above 1.
    """
    if params.best_of > 1 or params.num_beams > 1:
        raise GenforgeError(
            f"streaming needs best_of=1 and num_beams=1 (got best_of={params.best_of}, "
            f"num_beams={params.num_beams}): use generate_text, or set both to 1"
        )
    return _text_pieces(model, codec, prompt, params, rng, callback, eos_id, slide, _Record())


def generate_text(
    model: StepModel,
    codec: Codec,
    prompt: str,
    params: SamplingParams,
    rng: torch.Generator | None = None,
    callback: ProgressCallback | None = None,
    eos_id: int | None = None,
    slide: bool = False,
) -> Generation:
    """Generate a whole completion of ``prompt`` and return it as a ``Generation``.

    ``best_of > 1`` samples that many candidates in one batch and keeps the best by the mean
    log-probability of its kept tokens (``search.sample_candidates``); ``num_beams > 1`` runs beam
    search (``search.beam_hypotheses``). Otherwise this consumes exactly what ``stream_text`` yields.
    ``token_ids`` and ``logprob`` cover the kept tokens: those needed to produce ``text`` (a token
    straddling the start of the stop string counts as kept; so does the end-of-sequence token).
    """
    if params.best_of > 1 or params.num_beams > 1:
        return _generate_searched(model, codec, codec.encode(prompt), params, rng, callback, eos_id, slide)
    record = _Record()
    text = "".join(_text_pieces(model, codec, prompt, params, rng, callback, eos_id, slide, record))
    return Generation(
        text=text,
        token_ids=record.token_ids[: record.n_kept],
        finish_reason=record.finish_reason,
        logprob=float(sum(record.logprobs[: record.n_kept])),
    )


def _generate_searched(
    model: StepModel,
    codec: Codec,
    prompt_ids: list[int],
    params: SamplingParams,
    rng: torch.Generator | None,
    callback: ProgressCallback | None,
    eos: int | None,
    slide: bool,
) -> Generation:
    """Best-of-n candidates are reranked on the mean log-probability of their kept tokens (see
    ``search.kept_score``), beams on their beam score; the best one is cut at its stop string."""
    check_request(model, prompt_ids, params.max_tokens, slide)
    stop_at = text_stop_at(codec, params.stop, eos)
    if params.num_beams > 1:
        hyps = beam_hypotheses(model, prompt_ids, params, stop_at, callback, slide)
    else:
        rng = make_rng(params) if rng is None else rng
        hyps = sorted(sample_candidates(model, prompt_ids, params, rng, stop_at, callback, slide),
                      key=lambda h: -h.score)
    best = hyps[0]
    text, n_kept, reason = cut_text(codec, best.ids, params.stop, eos)
    return Generation(
        text=text, token_ids=best.ids[:n_kept], finish_reason=reason, logprob=float(sum(best.logprobs[:n_kept]))
    )
