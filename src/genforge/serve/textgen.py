"""One text generation request over the batch engine, for every text surface (completions, chat).

A surface (``TextSurface``) says how its choices, chunks and log-probabilities look; admission, the
engine run, disconnect checks, streaming, usage and errors are the same for every surface and live
here once. Errors found before generation are plain HTTP errors; an error during generation is a 500
(or, streaming, an error event and then ``data: [DONE]``).
"""
from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, StreamingResponse

from ..types import Codec, SamplingParams
from .runs import Event, GenerationRun
from .schemas import APIError
from .state import Served, ServerState

Token = tuple[int, float, list | None]  # (id, logprob, top alternatives)


class TextSurface:
    """How one API surface writes its results; subclasses fill in the shapes."""

    object = ""  # the "object" of a whole response
    chunk_object = ""  # the "object" of a streamed chunk
    id_prefix = ""

    def choice(self, index: int, text: str, logprobs: dict | None, finish_reason: str | None) -> dict:
        raise NotImplementedError

    def delta(self, ev: Event, logprobs: dict | None) -> dict:
        raise NotImplementedError

    def opening(self, n: int) -> list[dict]:
        """Choices of a first chunk sent before any token (chat: the assistant role)."""
        return []

    def logprobs(self, codec: Codec, tokens: list[Token], top: int) -> dict:
        raise NotImplementedError


@dataclass
class TextJob:
    """A validated request: what to generate and how to answer."""

    model: Served
    prompt_ids: list[int]
    params: SamplingParams  # max_tokens already fitted to the context
    n: int
    stops: tuple[str, ...]  # matched on the text: the user's and a chat template's
    stream: bool
    include_usage: bool = False
    logprobs: bool = False
    top_logprobs: int = 0
    echo: str = ""  # put before the text of each whole (not streamed) choice
    slide: bool = False  # past the context the window slides (see engine.EngineRequest.slide)
    extra: dict[str, Any] = field(default_factory=dict)  # genforge fields of the response / first chunk
    finish: Callable[[list[str]], dict[str, Any]] | None = None  # the texts -> fields of the response / last chunk


async def respond(request: Request, state: ServerState, surface: TextSurface, job: TextJob):
    """Run ``job`` and answer: a whole response, or an SSE stream when ``job.stream``."""
    if job.n > state.settings.max_n:
        raise APIError(400, f"n={job.n} exceeds this server's limit of {state.settings.max_n}", "n")
    run = GenerationRun(job.model.engine, job.model.tm.codec, job.prompt_ids, job.params, job.n, job.stops,
                        job.top_logprobs, job.slide)
    state.admit()
    try:
        run.start()
    except RuntimeError as e:
        state.inflight -= 1
        raise APIError(503, str(e), None, "unavailable", "server_error") from None
    rid, created = f"{surface.id_prefix}-{uuid.uuid4().hex[:24]}", int(time.time())

    def head(obj: str) -> dict:
        return {"id": rid, "object": obj, "created": created, "model": job.model.name}

    if job.stream:
        return StreamingResponse(_sse(state, surface, job, run, head(surface.chunk_object)),
                                 media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
    gate = OutputGate(state, job, run)
    try:
        texts, reasons = [""] * job.n, [None] * job.n
        tokens: list[list[Token]] = [[] for _ in range(job.n)]
        async for ev in _events_while_connected(request, run):
            if ev is None:
                return JSONResponse({}, status_code=499)  # the client went away
            if ev.error is not None:
                raise APIError(500, f"generation failed: {ev.error}", None, None, "server_error")
            if (ev := gate(ev)) is None:
                continue
            texts[ev.index] += ev.text
            tokens[ev.index].extend(ev.tokens)
            if ev.finish_reason:
                reasons[ev.index] = ev.finish_reason
    finally:
        run.cancel()
        state.inflight -= 1
    codec = job.model.tm.codec
    choices = [surface.choice(i, job.echo + texts[i],
                              surface.logprobs(codec, tokens[i], job.top_logprobs) if job.logprobs else None,
                              reasons[i]) for i in range(job.n)]
    done = await asyncio.to_thread(job.finish, texts) if job.finish else {}
    return {**head(surface.object), "choices": choices, "usage": _usage(run),
            "system_fingerprint": None, **job.extra, **done}


async def _events_while_connected(request: Request, run: GenerationRun) -> AsyncIterator[Event | None]:
    """The run's events; ``None`` (then the end) once the client has gone (checked every 0.25 s)."""
    events = run.events().__aiter__()
    check_at = time.monotonic() + 0.25
    while True:
        nxt = asyncio.ensure_future(events.__anext__())
        while not nxt.done():
            await asyncio.wait({nxt}, timeout=max(0.01, check_at - time.monotonic()))
            if time.monotonic() >= check_at:  # every 0.25 s, also while tokens keep arriving
                check_at = time.monotonic() + 0.25
                if await request.is_disconnected():
                    nxt.cancel()
                    run.cancel()
                    yield None
                    return
        try:
            yield nxt.result()
        except StopAsyncIteration:
            return


async def _sse(state: ServerState, surface: TextSurface, job: TextJob, run: GenerationRun, head: dict):
    def chunk(choices: list[dict], usage: dict | None = None, extra: dict | None = None) -> str:
        body = {**head, "choices": choices, **(extra or {})}
        if job.include_usage:
            body["usage"] = usage
        return f"data: {json.dumps(body)}\n\n"

    try:
        opening = surface.opening(job.n)
        if opening or job.extra:
            yield chunk(opening, extra=job.extra)
        texts, failed, gate = [""] * job.n, False, OutputGate(state, job, run)
        async for ev in run.events():
            if ev.error is not None:
                err = APIError(500, f"generation failed: {ev.error}", None, None, "server_error")
                yield f"data: {json.dumps(err.body())}\n\n"
                failed = True
                break
            if (ev := gate(ev)) is None:
                continue
            texts[ev.index] += ev.text
            lp = surface.logprobs(job.model.tm.codec, ev.tokens, job.top_logprobs) \
                if job.logprobs and ev.tokens else None
            yield chunk([surface.delta(ev, lp)])
        if job.finish and not failed:  # after the last token: what the whole texts tell (grounding)
            yield chunk([], extra=await asyncio.to_thread(job.finish, texts))
        if job.include_usage:
            yield chunk([], _usage(run))
        yield "data: [DONE]\n\n"
    finally:  # normal end, error, or the client went away: free the rows either way
        run.cancel()
        state.inflight -= 1


def check_input(state: ServerState, m: Served, texts: list[str], param: str) -> None:
    """Refuse, before any work, a request whose text the server's safety filter (``--safety``) blocks: a 400
    ``content_policy_violation`` naming ``param``, with the configured refusal message."""
    f = state.settings.safety_filter
    if f is None or m.modality != "text":
        return
    from ..safety.filters import ClassifierError

    try:
        hit = f.check_input(texts, m.name)
    except ClassifierError as e:
        raise APIError(500, str(e), None, None, "server_error") from None
    if hit is not None:
        raise APIError(400, f.settings.refusal_message, param, "content_policy_violation")


class OutputGate:
    """The safety filter's output guard, one per choice: text a blocked span may still need is held back, a
    choice is cut before a blocked span (``finish_reason`` "content_filter", its row freed) and the rest of it
    dropped. Whole and streamed responses pass the same events through it. Without ``--safety``: a no-op."""

    def __init__(self, state: ServerState, job: TextJob, run: GenerationRun) -> None:
        f = state.settings.safety_filter
        self.run = run
        self.guards = [f.guard(job.model.name) for _ in range(job.n)] \
            if f is not None and job.model.modality == "text" else None

    def __call__(self, ev: Event) -> Event | None:
        if self.guards is None or ev.error is not None:
            return ev
        guard = self.guards[ev.index]
        if guard.hit is not None:
            return None  # the end of a choice that was cut (its row is already cancelled)
        text, tokens, hit = guard.push(ev.text, ev.tokens, final=ev.finish_reason is not None)
        if hit is not None:
            self.run.choices[ev.index].request.cancel()
            return replace(ev, text=text, tokens=tokens, finish_reason="content_filter")
        return replace(ev, text=text, tokens=tokens) if text or tokens or ev.finish_reason else None  # all held


def _usage(run: GenerationRun) -> dict:
    return {"prompt_tokens": run.prompt_tokens, "completion_tokens": run.completion_tokens,
            "total_tokens": run.prompt_tokens + run.completion_tokens}
