"""One generation request as the HTTP layer sees it: engine tokens in, text events out (asyncio).

Each choice of a request is one engine row. Token ids arrive on the engine thread and are handed
to the event loop; here they are decoded (UTF-8-safe) and passed through the stop-string matcher,
the same pieces the in-process ``stream_text`` uses, so a streamed reply equals the non-streamed
one and a stop string split across tokens never leaks.
"""
from __future__ import annotations

import asyncio
import threading
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from ..sampling.stop import StopMatcher
from ..types import Codec, SamplingParams
from .engine import BatchEngine, EngineRequest


@dataclass
class Event:
    index: int  # which choice
    text: str = ""  # newly safe text
    tokens: list[tuple[int, float, list | None]] = field(default_factory=list)  # (id, logprob, top)
    finish_reason: str | None = None  # set on the last event of a choice
    error: BaseException | None = None


class ChoiceRun:
    def __init__(self, index: int, codec: Codec, stops: tuple[str, ...]) -> None:
        self.index = index
        self.codec = codec
        self.decoder = codec.decoder()
        self.matcher = StopMatcher(stops)
        self.request: EngineRequest | None = None
        self.completion_tokens = 0
        self.done = False

    def on_token(self, token: int, logprob: float, top: list | None) -> Event:
        if self.done:  # the engine ran a step or two before it saw the cancel: drop the extra tokens
            return Event(self.index)  # (a second finish_reason would end the whole run early)
        self.completion_tokens += 1
        safe, stopped = self.matcher.push(self.decoder.push(token))
        if stopped:
            self.request.cancel()
            self.done = True
            return Event(self.index, safe, [(token, logprob, top)], finish_reason="stop")
        return Event(self.index, safe, [(token, logprob, top)])

    def on_done(self, reason: str, error: BaseException | None) -> Event:
        if self.done:  # already finished by a stop string; the engine's "cancelled" is not news
            return Event(self.index)
        self.done = True
        if error is not None:
            return Event(self.index, finish_reason="error", error=error)
        safe, stopped = self.matcher.push(self.decoder.flush())
        rest = "" if stopped else self.matcher.flush()
        return Event(self.index, safe + rest, finish_reason="stop" if stopped or reason == "eos" else "length")

    def fail(self, error: BaseException) -> Event:
        """End this choice with ``error`` (e.g. a token its codec cannot decode) and free its row."""
        if self.request is not None:
            self.request.cancel()
        if self.done:
            return Event(self.index)
        self.done = True
        return Event(self.index, finish_reason="error", error=error)


class _LoopBridge:
    """Hands engine-thread callbacks to one event loop, one wake-up per burst.

    The engine emits a token for every active row in one go; waking the loop once per token cost
    ~17% of the decode thread at 16 streams, so callbacks queue here and one wake-up drains them.
    A callback that raises never takes the rest of the burst with it: each runs on its own and an
    error goes to the loop's exception handler (``GenerationRun`` turns its own errors into events).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.items: deque[Callable[[], None]] = deque()
        self.lock = threading.Lock()
        self.scheduled = False

    def put(self, fn: Callable[[], None]) -> None:
        with self.lock:
            self.items.append(fn)
            if self.scheduled:
                return
            self.scheduled = True
        self.loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        with self.lock:
            items, self.items, self.scheduled = self.items, deque(), False
        for fn in items:
            try:
                fn()
            except Exception as err:  # reported, and the other callbacks still run
                self.loop.call_exception_handler({"message": "genforge: a generation callback failed",
                                                  "exception": err})


_bridges: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopBridge] = weakref.WeakKeyDictionary()


class GenerationRun:
    """All choices of one request, as one async stream of ``Event``s."""

    def __init__(self, engine: BatchEngine, codec: Codec, prompt_ids: list[int], params: SamplingParams,
                 n: int, stops: tuple[str, ...], top_logprobs: int = 0, slide: bool | None = None) -> None:
        loop = asyncio.get_running_loop()
        self.bridge = _bridges.get(loop) or _bridges.setdefault(loop, _LoopBridge(loop))
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        self.choices = [ChoiceRun(i, codec, stops) for i in range(n)]
        self.prompt_tokens = len(prompt_ids)
        for i, choice in enumerate(self.choices):
            # choice i of a seeded request uses seed + i, so the n choices differ but repeat
            p = params if params.seed is None or i == 0 else _with_seed(params, params.seed + i)
            choice.request = EngineRequest(
                list(prompt_ids), p, top_logprobs=top_logprobs, slide=slide,
                on_token=lambda t, lp, top, c=choice: self._put(c, c.on_token, t, lp, top),
                on_done=lambda r, e, c=choice: self._put(c, c.on_done, r, e))
        self.engine = engine

    def _put(self, choice: ChoiceRun, fn, *args) -> None:
        def deliver() -> None:
            try:
                ev = fn(*args)
            except Exception as err:  # a decode error: the choice ends with it, never silently short
                ev = choice.fail(err)
            self.queue.put_nowait(ev)

        self.bridge.put(deliver)

    def start(self) -> None:
        for c in self.choices:
            self.engine.submit(c.request)

    def cancel(self) -> None:
        for c in self.choices:
            c.request.cancel()

    @property
    def completion_tokens(self) -> int:
        return sum(c.completion_tokens for c in self.choices)

    async def events(self) -> AsyncIterator[Event]:
        finished = 0
        while finished < len(self.choices):
            ev = await self.queue.get()
            if ev.finish_reason is not None:
                finished += 1
            if ev.text or ev.tokens or ev.finish_reason:
                yield ev


def _with_seed(params: SamplingParams, seed: int) -> SamplingParams:
    from dataclasses import replace

    return replace(params, seed=seed)
