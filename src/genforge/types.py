"""Protocols and small dataclasses every stage shares.

The pipeline is encode -> (retrieve) -> predict -> sample -> decode. Codecs own encode/decode,
models own predict (``StepModel``), samplers own sample/refine and know models only through
``StepModel``.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .errors import ConfigError

if TYPE_CHECKING:  # torch only for annotations: importing the shared types stays cheap (the CLI's --help)
    from torch import Tensor


@runtime_checkable
class TokenCodec(Protocol):
    """Turns items of one modality into token ids and back: text, SMILES strings, music events...
    Travels inside every checkpoint via ``to_dict`` (rebuilt by ``codecs.codec_from_dict``)."""

    kind: str  # its name in registry.CODECS

    @property
    def vocab_size(self) -> int: ...

    def encode(self, item: Any) -> list[int]: ...

    def decode(self, ids: Iterable[int]) -> Any: ...

    def to_dict(self) -> dict[str, Any]: ...


@runtime_checkable
class Codec(TokenCodec, Protocol):
    """A text codec: ``str`` in and out, plus an incremental decoder for streaming (what the text
    layer of sampling needs: stop strings and UTF-8-safe pieces)."""

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Iterable[int]) -> str: ...

    def decoder(self) -> StreamDecoder: ...



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


@runtime_checkable
class BatchedStepModel(StepModel, Protocol):
    """A ``StepModel`` that also decodes independent sequences of different lengths side by side, the
    rows of one batch state (continuous batching; what ``serve.engine`` needs and all it uses).

    A batch state of R rows is ``init_state(R, max_len)``. The caller keeps each row's length (the
    positions it holds) and sets a row's content from a one-row state prefilled with ``step``.
    """

    def put_row(self, state: State, row: int, single: State) -> None:
        """Copy ``single``, a one-row state from ``init_state(1, ...)`` and ``step``, into ``row``."""
        ...

    def move_row(self, state: State, src: int, dst: int, length: int) -> None:
        """Copy the first ``length`` positions of row ``src`` into row ``dst``."""
        ...

    def step_rows(self, ids: Tensor, state: State, lengths: Tensor) -> Tensor:
        """Feed one token per row, ``ids`` (n, 1), into rows 0..n-1, row b holding ``lengths[b]``
        positions; return logits (n, 1, V). The caller advances ``lengths``."""
        ...


class Denoiser(Protocol):
    """What diffusion samplers run: ``D(x, sigma, cond)`` estimates the clean image x0 from the noisy
    ``x = x0 + sigma * eps`` (Karras et al. 2022); sigma is (B,), cond (B,) class ids or None."""

    def __call__(self, x: Tensor, sigma: Tensor, cond: Tensor | None = None) -> Tensor: ...


MAX_CANDIDATES = 64  # most beams or best-of candidates one request may ask for (each is a batch row)
MAX_STOP = 16  # most stop strings one generation may have (a chat template's own count too)


@dataclass(frozen=True)
class Range:
    """The allowed values of one numeric sampling parameter: the rule ``SamplingParams`` checks, which the
    HTTP API's schema and the studio's controls show (they never check it a second time)."""

    low: float | None = None  # smallest allowed value; None = unbounded
    high: float | None = None  # largest allowed value; None = unbounded
    low_open: bool = False  # True: ``low`` itself is not allowed
    high_open: bool = False  # True: ``high`` itself is not allowed
    whole: bool = False  # an integer
    note: str = ""  # what special values mean, e.g. "0 = greedy"

    def allows(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, int if self.whole else (int, float)):
            return False
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return self.high is None or (value < self.high or (not self.high_open and value == self.high))

    def describe(self) -> str:
        text = "an integer" if self.whole else "a finite number"
        if self.low is not None and self.high is not None and not (self.low_open or self.high_open):
            text += f" from {_num(self.low)} to {_num(self.high)}"
        else:
            bounds = [f"{'>' if self.low_open else '>='} {_num(self.low)}"] if self.low is not None else []
            bounds += [f"{'<' if self.high_open else '<='} {_num(self.high)}"] if self.high is not None else []
            text += f" {' and '.join(bounds)}" if bounds else ""
        return f"{text} ({self.note})" if self.note else text

    def json_schema(self) -> dict[str, float]:
        """The bounds as JSON Schema keywords (OpenAPI 3.1), for documentation."""
        out: dict[str, float] = {}
        if self.low is not None:
            out["exclusiveMinimum" if self.low_open else "minimum"] = self.low
        if self.high is not None:
            out["exclusiveMaximum" if self.high_open else "maximum"] = self.high
        return out


def _num(x: float) -> str:
    for power in (63, 64):  # the seed's bounds, as people write them
        if x in (-(2**power), 2**power - 1):
            return f"-2**{power}" if x < 0 else f"2**{power} - 1"
    return str(int(x)) if float(x).is_integer() else str(x)


# The one rule for every numeric sampling parameter (OpenAI's ranges where OpenAI has the parameter).
SAMPLING_RANGES: dict[str, Range] = {
    "max_tokens": Range(1, whole=True),
    "temperature": Range(0, 2, note="0 = greedy"),
    "top_k": Range(0, whole=True, note="0 = off"),
    "top_p": Range(0, 1, low_open=True, note="1 = off"),
    "min_p": Range(0, 1, high_open=True, note="0 = off"),
    "repetition_penalty": Range(0, low_open=True, note="1 = off"),
    "frequency_penalty": Range(-2, 2),
    "presence_penalty": Range(-2, 2),
    "seed": Range(-(2**63), 2**64 - 1, whole=True, note="None = random"),
    "num_beams": Range(1, MAX_CANDIDATES, whole=True),
    "best_of": Range(1, MAX_CANDIDATES, whole=True),
    "length_penalty": Range(),
}


class SamplingParamError(ConfigError):
    """A sampling parameter outside its rule; ``param`` names it (the HTTP API's error ``param``)."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class SamplingParams:
    """How to turn logits into tokens: the one rule and the one default of each parameter, used by the
    Python API, ``genforge generate``, ``genforge chat``, the server and the studio. Validated on
    construction against ``SAMPLING_RANGES``; a bad value raises ``SamplingParamError`` naming it."""

    max_tokens: int = 200  # new tokens to generate at most (the CLI, chat, server and studio: omitted = what fits)
    temperature: float = 0.8  # 0 means greedy; below 1 sharpens the model's distribution
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
    # a sampling.watermark.WatermarkSettings: bias the key's green tokens (Kirchenbauer et al. 2023); None = off
    watermark: Any = None

    def __post_init__(self) -> None:
        def bad(name: str, allowed: str) -> None:
            raise SamplingParamError(name, f"sampling parameter {name}={getattr(self, name)!r} is invalid: "
                                     f"allowed {allowed}")

        for name, rule in SAMPLING_RANGES.items():
            value = getattr(self, name)
            if not (name == "seed" and value is None) and not rule.allows(value):
                bad(name, rule.describe())
        if not isinstance(self.stop, tuple) or any((not isinstance(s, str)) or s == "" for s in self.stop) \
                or len(self.stop) > MAX_STOP:
            bad("stop", f"at most {MAX_STOP} non-empty strings")
        if self.num_beams > 1 and self.best_of > 1:
            bad("best_of", "1 when num_beams > 1 (choose beam search or best-of-n)")
        if self.watermark is not None and not all(hasattr(self.watermark, a) for a in ("key", "gamma", "delta")):
            bad("watermark", "None or a genforge.sampling.watermark.WatermarkSettings")


def sampling_defaults(*names: str) -> dict[str, Any]:
    """The default of each named ``SamplingParams`` field (all of them when no name is given)."""
    defaults = {f.name: f.default for f in fields(SamplingParams)}
    return {n: defaults[n] for n in (names or defaults)}


@dataclass
class Generation:
    """The result of one generation: text, token ids and why it stopped."""

    text: str
    token_ids: list[int] = field(default_factory=list)
    finish_reason: str = "length"  # "length" | "stop" | "eos" (the end-of-sequence token)
    logprob: float = 0.0  # sum of log-probabilities of the generated tokens (under the model)

