"""Continuous batching: one decode loop serves every request of a model.

Requests join and leave the running batch between steps (Yu et al. 2022, "Orca"): a new request
is prefilled on its own, its KV cache copied into a free row of the shared cache, and from then on
each step feeds one token per active row through ``GPT.step_rows``. Finished rows are compacted
away (the last row moves into the hole), so a step always runs over rows 0..n-1 and a lone request
costs what it would cost alone. Sampling stays per request, with each request's own parameters
and ``torch.Generator``, through the same ``sample_next`` the in-process samplers use.

The loop runs in one thread; callbacks hand tokens to the caller (the HTTP layer bridges them
into asyncio). Cancelling a request (client gone, stop string seen) frees its row next step.
"""
from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..sampling.processors import sample_next
from ..types import SamplingParams

TokenCallback = Callable[[int, float, list[tuple[int, float]] | None], None]
DoneCallback = Callable[[str, BaseException | None], None]  # finish reason, error


@dataclass(eq=False)
class EngineRequest:
    prompt_ids: list[int]
    params: SamplingParams
    on_token: TokenCallback
    on_done: DoneCallback
    top_logprobs: int = 0  # > 0: also report the most likely alternatives at each step
    rng: torch.Generator = field(default_factory=torch.Generator)
    cancelled: threading.Event = field(default_factory=threading.Event)
    # engine-side state
    generated: int = 0
    last: int = 0
    counts: torch.Tensor | None = None

    def cancel(self) -> None:
        self.cancelled.set()


def _top(logits: torch.Tensor, k: int) -> list[tuple[int, float]]:
    lp = torch.log_softmax(logits.float(), dim=-1)
    vals, ids = lp.topk(min(k, lp.numel()))
    return list(zip(ids.tolist(), vals.tolist()))


class BatchEngine:
    """Owns a model's shared KV cache and decode thread. ``submit`` is safe from any thread."""

    def __init__(self, model, max_batch: int = 16) -> None:
        if not hasattr(model, "step_rows"):
            raise TypeError(f"{type(model).__name__} has no step_rows: continuous batching needs a Transformer")
        self.model = model
        self.max_batch = max_batch
        self.context = int(model.max_len)
        self._pending: deque[EngineRequest] = deque()
        self._active: list[EngineRequest] = []
        self._lengths = torch.zeros(max_batch, dtype=torch.long)
        self._cache = None
        self._cv = threading.Condition()
        self._stop = False
        self._thread: threading.Thread | None = None
        self.steps = 0  # batched decode steps run (for tests and metrics)
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
        if self._cache is None:
            self._cache = self.model.init_state(self.max_batch, self.context)
        n = len(req.prompt_ids)
        single = self.model.init_state(1, n)
        ids = torch.tensor([req.prompt_ids], dtype=torch.long, device=self._cache.k.device)
        logits, single = self.model.step(ids, single)
        row = len(self._active)
        self._cache.put_row(row, single, n)
        self._lengths[row] = n
        p = req.params
        if p.repetition_penalty != 1.0 or p.frequency_penalty or p.presence_penalty:
            req.counts = torch.zeros(1, self.model.vocab_size, device=logits.device)
            req.counts[0].index_add_(0, ids[0], torch.ones(n, device=logits.device))
        self._active.append(req)
        self._emit(req, logits[:, -1])

    def _emit(self, req: EngineRequest, logits: torch.Tensor) -> None:
        """Sample the request's next token from (1, V) logits and hand it over."""
        tok, lp = sample_next(logits, req.params, req.counts, req.rng)
        t = int(tok[0])
        if req.counts is not None:
            req.counts[0, t] += 1
        req.last = t
        req.generated += 1
        req.on_token(t, float(lp[0]), _top(logits[0], req.top_logprobs) if req.top_logprobs else None)

    def _finish_reason(self, req: EngineRequest, row: int) -> str | None:
        if req.cancelled.is_set():
            return "cancelled"
        if req.generated >= req.params.max_tokens:
            return "length"
        if int(self._lengths[row]) + 1 >= self.context:
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
                length = int(self._lengths[last])
                self._cache.move_row(last, row, length + 1)
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
        device = self._cache.k.device
        ids = torch.tensor([[r.last] for r in self._active], dtype=torch.long, device=device)
        if n == 1:  # a lone row: the plain KV-cache step (no ragged mask), as the in-process samplers run it
            view = self._cache.rows(1)
            view.pos = int(self._lengths[0])
            logits, _ = self.model.step(ids, view)
        else:
            logits = self.model.step_rows(ids, self._cache.rows(n), self._lengths[:n].to(device))  # (n, 1, V)
        self._lengths[:n] += 1
        self.steps += 1
        for row, req in enumerate(self._active):
            self._emit(req, logits[row:row + 1, -1])
        self._retire()
