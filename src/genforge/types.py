"""Protocols and small dataclasses every stage shares.

The pipeline is encode -> (retrieve) -> predict -> sample -> decode. Codecs own encode/decode,
models own predict (``StepModel``), samplers own sample/refine and know models only through
``StepModel``.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from torch import Tensor


@runtime_checkable
class Codec(Protocol):
    """Turns text into token ids and back. Travels inside every checkpoint via ``to_dict``."""

    kind: str  # "char" | "bpe"; the key codec_from_dict dispatches on

    @property
    def vocab_size(self) -> int: ...

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Iterable[int]) -> str: ...

    def decoder(self) -> StreamDecoder: ...

    def to_dict(self) -> dict[str, Any]: ...


class StreamDecoder(Protocol):
    """Incremental decode: push ids one at a time, get back only complete UTF-8 text."""

    def push(self, token_id: int) -> str: ...

    def flush(self) -> str: ...


State = Any  # a model's decode state: a KV cache for a Transformer, hidden state for an RNN


@runtime_checkable
class StepModel(Protocol):
    """Anything the autoregressive samplers can drive.

    ``step`` consumes ``ids`` (B, T) starting at the state's current position and returns the
    logits of the last consumed position, shape (B, 1, V), plus the advanced state. Feeding a
    sequence in one call or token by token gives the same logits (the KV-cache property, tested).
    """

    vocab_size: int
    max_len: int  # longest sequence the model can attend over (its context length)

    def init_state(self, batch_size: int, max_len: int) -> State: ...

    def step(self, ids: Tensor, state: State) -> tuple[Tensor, State]: ...

    def reorder_state(self, state: State, index: Tensor) -> State:
        """Select/reorder the batch rows of a state (beam search, best-of-n)."""
        ...


MAX_CANDIDATES = 64  # most beams or best-of candidates one request may ask for (each is a batch row)


@dataclass(frozen=True)
class SamplingParams:
    """How to turn logits into tokens. Validated on construction (see ``__post_init__``)."""

    max_tokens: int = 200  # new tokens to generate at most
    temperature: float = 1.0  # 0 means greedy
    top_k: int = 0  # keep the k most likely tokens; 0 = off
    top_p: float = 1.0  # nucleus: keep the smallest set with mass >= top_p; 1 = off
    min_p: float = 0.0  # drop tokens below min_p * p(max); 0 = off
    repetition_penalty: float = 1.0  # CTRL-style: divide positive logits (multiply negative) of seen tokens
    frequency_penalty: float = 0.0  # OpenAI-style: subtract count * penalty
    presence_penalty: float = 0.0  # OpenAI-style: subtract penalty once a token has appeared
    stop: tuple[str, ...] = ()  # stop strings; never part of the output
    seed: int | None = None  # None = nondeterministic
    num_beams: int = 1  # >1: beam search (deterministic; ignores temperature/top-k/top-p)
    best_of: int = 1  # >1: sample n candidates, return the one with the best mean log-probability
    length_penalty: float = 1.0  # beam search: score / len**length_penalty

    def __post_init__(self) -> None:
        from .errors import ConfigError

        def bad(name: str, allowed: str) -> None:
            raise ConfigError(f"sampling parameter {name}={getattr(self, name)!r} is invalid: allowed {allowed}")

        if not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            bad("max_tokens", "an integer >= 1")
        if not (0.0 <= self.temperature <= 100.0):
            bad("temperature", "0 <= temperature <= 100 (0 = greedy)")
        if not isinstance(self.top_k, int) or self.top_k < 0:
            bad("top_k", "an integer >= 0 (0 = off)")
        if not (0.0 < self.top_p <= 1.0):
            bad("top_p", "0 < top_p <= 1")
        if not (0.0 <= self.min_p < 1.0):
            bad("min_p", "0 <= min_p < 1")
        if not (self.repetition_penalty > 0.0):
            bad("repetition_penalty", "a number > 0 (1 = off)")
        if not (-2.0 <= self.frequency_penalty <= 2.0):
            bad("frequency_penalty", "-2 <= frequency_penalty <= 2")
        if not (-2.0 <= self.presence_penalty <= 2.0):
            bad("presence_penalty", "-2 <= presence_penalty <= 2")
        if not isinstance(self.stop, tuple) or any((not isinstance(s, str)) or s == "" for s in self.stop) \
                or len(self.stop) > 16:
            bad("stop", "at most 16 non-empty strings")
        if self.seed is not None and (not isinstance(self.seed, int) or isinstance(self.seed, bool)
                                      or not -(2**63) <= self.seed < 2**64):
            bad("seed", "None or an integer from -2**63 to 2**64 - 1")
        if not isinstance(self.num_beams, int) or not 1 <= self.num_beams <= MAX_CANDIDATES:
            bad("num_beams", f"an integer from 1 to {MAX_CANDIDATES}")
        if not isinstance(self.best_of, int) or not 1 <= self.best_of <= MAX_CANDIDATES:
            bad("best_of", f"an integer from 1 to {MAX_CANDIDATES}")
        if self.num_beams > 1 and self.best_of > 1:
            bad("best_of", "1 when num_beams > 1 (choose beam search or best-of-n)")


@dataclass
class Generation:
    """The result of one generation: text, token ids and why it stopped."""

    text: str
    token_ids: list[int] = field(default_factory=list)
    finish_reason: str = "length"  # "length" | "stop" | "context"
    logprob: float = 0.0  # sum of log-probabilities of the generated tokens (under the model)

