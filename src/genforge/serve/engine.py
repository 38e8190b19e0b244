"""Continuous batching: one decode loop serves every request of a model.

Requests join and leave the running batch between steps (Yu et al. 2022, "Orca"): a new request
is prefilled on its own, its state copied into a free row of the shared batch state, and from then
on each step feeds one token per active row through ``step_rows``. Finished rows are compacted
away (the last row moves into the hole), so a step always runs over rows 0..n-1 and a lone request
costs what it would cost alone. The engine knows the model only through ``BatchedStepModel``
(``init_state``, ``step``, ``put_row``, ``move_row``, ``step_rows``) and runs the token loop's own
pieces (``sampling.tokens``): prefill, penalty counts, ``sample_step`` and the sliding-window
refill, each request with its own parameters and ``torch.Generator``. So a request produces exactly
the tokens in-process generation produces for the same parameters and seed.

With ``watermark`` (a ``sampling.watermark.WatermarkSettings``) every request that does not carry its
own watermark is given it: each row's green lists follow that row's own previous tokens, so a batched
reply carries the same mark as the in-process one (``genforge serve --watermark``).

A row whose request slides (``EngineRequest.slide``; unset: the engine's ``sliding_window``) slides
like in-process generation does when its state is full (its most recent tokens are re-prefilled from
position 0) instead of ending. A sampled ``eos_id`` ends its row
("eos") without being handed over.

The loop runs in one thread; callbacks hand tokens to the caller (the HTTP layer bridges them
into asyncio). Cancelling a request (client gone, stop string seen) frees its row next step.
"""
from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from ..errors import GenforgeError
from ..sampling.tokens import model_device, penalty_counts, prefill, refill, sample_step, slide_keep
from ..types import BatchedStepModel, SamplingParams

TokenCallback = Callable[[int, float, list[tuple[int, float]] | None], None]
DoneCallback = Callable[[str, BaseException | None], None]  # finish reason, error


@dataclass(eq=False)
class EngineRequest:
    prompt_ids: list[int]
    params: SamplingParams
    on_token: TokenCallback
    on_done: DoneCallback
    top_logprobs: int = 0  # > 0: also report the most likely alternatives at each step
    slide: bool | None = None  # past the context: slide the window (None: the engine's sliding_window)
    rng: torch.Generator = field(default_factory=torch.Generator)
    cancelled: threading.Event = field(default_factory=threading.Event)
    # engine-side state
    generated: int = 0
    ids: list[int] = field(default_factory=list)  # prompt + tokens sampled so far (a slide re-prefills from them)
    counts: torch.Tensor | None = None  # (1, V) token counts for the penalties; None without them
    ended: bool = False  # sampled the end-of-sequence token

    def cancel(self) -> None:
        self.cancelled.set()


def _top(logits: torch.Tensor, k: int) -> list[tuple[int, float]]:
    lp = torch.log_softmax(logits.float(), dim=-1)
    vals, ids = lp.topk(min(k, lp.numel()))
    return list(zip(ids.tolist(), vals.tolist()))


class BatchEngine:
    """Owns a model's batch state and decode thread. ``submit`` is safe from any thread."""

    def __init__(self, model: BatchedStepModel, max_batch: int = 16, sliding_window: bool = False,
                 eos_id: int | None = None, watermark: Any = None) -> None:
        if not isinstance(model, BatchedStepModel):
            raise GenforgeError(f"a {type(model).__name__} model cannot be served: the server's batching needs "
                                "put_row, move_row and step_rows (genforge.types.BatchedStepModel)")
        self.model = model
        self.max_batch = max_batch
        self.context = int(model.max_len)
        self.sliding_window = sliding_window
        self.keep = slide_keep(self.context)  # tokens a sliding row keeps when its state is full
        self.eos_id = eos_id
        self.watermark = watermark  # WatermarkSettings given to requests without their own; None = off
        self.device = model_device(model)
        self._pending: deque[EngineRequest] = deque()
        self._active: list[EngineRequest] = []
        self._lengths = torch.zeros(max_batch, dtype=torch.long)  # positions each row's state holds
        self._state = None
        self._cv = threading.Condition()
        self._stop = False
        self._thread: threading.Thread | None = None
        self.steps = 0  # batched decode steps run (for tests and metrics)
        self.slides = 0  # rows re-prefilled because their state was full
        self.max_rows_seen = 0

    # --- public -----------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="genforge-engine", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    def submit(self, req: EngineRequest) -> None:
        if self.watermark is not None and req.params.watermark is None:
            req.params = replace(req.params, watermark=self.watermark)
        if req.params.seed is not None:
            req.rng.manual_seed(req.params.seed)
        else:
            req.rng.seed()
        with self._cv:
            if self._stop:
                raise RuntimeError("the engine is shutting down")
            self._pending.append(req)
            self._cv.notify()

    @property
    def load(self) -> int:
        with self._cv:
            return len(self._pending) + len(self._active)

    # --- the loop -----------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._stop and not self._pending and not self._active:
                    self._cv.wait()
                if self._stop:
                    break
                admit = []
                while self._pending and len(self._active) + len(admit) < self.max_batch:
                    admit.append(self._pending.popleft())
            try:
                with torch.inference_mode():
                    for req in admit:
                        self._admit(req)
                    if self._active:
                        self._step()
            except BaseException as err:  # a model error fails the requests in flight, not the server
                for req in self._active:
                    req.on_done("error", err)
                self._active.clear()
        for req in list(self._active) + list(self._pending):
            req.on_done("error", RuntimeError("the server is shutting down"))

    def _admit(self, req: EngineRequest) -> None:
        if req.cancelled.is_set():
            req.on_done("cancelled", None)
            return
        if self._state is None:
            self._state = self.model.init_state(self.max_batch, self.context)
        if req.slide is None:
            req.slide = self.sliding_window
        n = len(req.prompt_ids)
        last, single = prefill(self.model, [req.prompt_ids], min(n + req.params.max_tokens, self.context))
        row = len(self._active)
        self.model.put_row(self._state, row, single)
        self._lengths[row] = n
        req.ids = list(req.prompt_ids)
        req.counts = penalty_counts(req.params, req.prompt_ids, 1, self.model.vocab_size, last.device)
        self._active.append(req)
        self._emit(req, last)

    def _emit(self, req: EngineRequest, logits: torch.Tensor) -> None:
        """Sample the request's next token from (1, V) logits and hand it over."""
        tok, lp = sample_step(logits, req.params, req.counts, req.rng, [req.ids])
        t = int(tok[0])
        req.ids.append(t)
        req.generated += 1
        if t == self.eos_id:
            req.ended = True
            return
        req.on_token(t, float(lp[0]), _top(logits[0], req.top_logprobs) if req.top_logprobs else None)

    def _finish_reason(self, req: EngineRequest, row: int) -> str | None:
        if req.cancelled.is_set():
            return "cancelled"
        if req.ended:
            return "eos"
        if req.generated >= req.params.max_tokens:
            return "length"
        if not req.slide and int(self._lengths[row]) + 1 >= self.context:
            return "length"
        return None

    def _retire(self) -> None:
        """Drop finished rows, moving the last active row into each hole."""
        for row in range(len(self._active) - 1, -1, -1):
            req = self._active[row]
            reason = self._finish_reason(req, row)
            if reason is None:
                continue
            last = len(self._active) - 1
            if row != last:
                self.model.move_row(self._state, last, row, int(self._lengths[last]) + 1)
                self._lengths[row] = self._lengths[last]
                self._active[row] = self._active[last]
            self._active.pop()
            req.on_done(reason, None)

    def _step(self) -> None:
        self._retire()
        n = len(self._active)
        if n == 0:
            return
        self.max_rows_seen = max(self.max_rows_seen, n)
        for row, req in enumerate(self._active):
            if req.slide and int(self._lengths[row]) >= self.context:  # full: slide as sampling.tokens.feed does
                self.model.put_row(self._state, row, refill(self.model, [req.ids], self.keep, self.context))
                self._lengths[row] = self.keep - 1
                self.slides += 1
        ids = torch.tensor([[r.ids[-1]] for r in self._active], dtype=torch.long, device=self.device)
        logits = self.model.step_rows(ids, self._state, self._lengths[:n].to(self.device))  # (n, 1, V)
        self._lengths[:n] += 1
        self.steps += 1
        for row, req in enumerate(self._active):
            self._emit(req, logits[row:row + 1, -1])
        self._retire()
