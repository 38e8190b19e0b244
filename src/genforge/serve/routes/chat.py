"""``POST /v1/chat/completions``: a reply to role messages, rendered with the model's chat template.

With ``genforge_fit_context`` (the studio sends it) the oldest messages that do not fit the model's
context are left out, and the response's ``genforge_context`` says how many; without it, OpenAI's
semantics hold (an explicit ``max_tokens`` that does not fit is a 400). With ``genforge_sliding_window``
(or a server started with ``--sliding-window``) an explicit ``max_tokens`` may pass the context: the reply
slides the window.
"""
from __future__ import annotations

from dataclasses import replace

from fastapi import APIRouter, Request

from ...errors import GenforgeError
from ...pipelines.retrieve import with_sources
from ...types import Codec
from ..context_fit import ContextLengthError, fit_chat
from ..grounded import citations_extra, grounding_finish, request_context, requested
from ..schemas import APIError, ChatRequest
from ..state import Server
from ..textgen import TextJob, TextSurface, Token, check_input, respond
from .completions import context_error, sliding

router = APIRouter()


class ChatCompletions(TextSurface):
    object = "chat.completion"
    chunk_object = "chat.completion.chunk"
    id_prefix = "chatcmpl"

    def choice(self, index, text, logprobs, finish_reason):
        return {"index": index, "message": {"role": "assistant", "content": text}, "logprobs": logprobs,
                "finish_reason": finish_reason}

    def delta(self, ev, logprobs):
        return {"index": ev.index, "delta": {"content": ev.text} if ev.text else {}, "logprobs": logprobs,
                "finish_reason": ev.finish_reason}

    def opening(self, n: int) -> list[dict]:
        return [{"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
                for i in range(n)]

    def logprobs(self, codec: Codec, tokens: list[Token], top: int) -> dict:
        def entry(token: int, logprob: float) -> dict:
            text = codec.decode([token])
            return {"token": text, "logprob": logprob, "bytes": list(text.encode())}

        return {"content": [{**entry(t, lp), "top_logprobs": [entry(a, b) for a, b in (alts or [])]}
                            for t, lp, alts in tokens]}


async def _sources(state, m, req: ChatRequest, messages: list[dict]):
    """Retrieval for the newest user message; the room is what the system message and it leave."""
    users = [msg for msg in messages if msg["role"] == "user"]
    if not users or requested(req, state.settings.retrieve) is None:
        return None
    system = [msg for msg in messages[:1] if msg["role"] == "system"]
    alone = len(m.tm.codec.encode(m.template.render([*system, users[-1]])))
    return await request_context(state.indexes, m, req, state.settings.retrieve, users[-1]["content"], alone)


@router.post("/v1/chat/completions")
async def chat_completions(request: Request, req: ChatRequest, state: Server):
    m = state.get(req.model)
    params = req.sampling_params()
    messages = [msg.model_dump(exclude_none=True) for msg in req.messages]
    check_input(state, m, [msg["content"] for msg in messages], "messages")  # --safety, before any work
    for i, msg in enumerate(messages):  # name the message a character outside the vocabulary is in
        try:
            m.tm.codec.encode(m.template.neutralise(msg["content"]))
        except GenforgeError as e:
            raise APIError(400, f"message {i} ({msg['role']}): {e}", "messages", "invalid_messages") from None
    slide = sliding(req, m, state.settings.max_sliding_tokens)
    ctx = await _sources(state, m, req, messages)
    if ctx is not None:  # the sources block goes into the system message (the template neutralises it too)
        messages = with_sources(messages, ctx.block, m.template.default_system)
    try:
        window = fit_chat(messages, m.template.render, m.tm.codec.encode, m.context_length, req.max_tokens,
                          drop_oldest=req.genforge_fit_context, slide=slide)
    except ContextLengthError as e:
        raise context_error(e) from None
    except GenforgeError as e:  # malformed messages, or text outside the vocabulary
        raise APIError(400, str(e), "messages", "invalid_messages") from None
    extra = citations_extra(ctx)
    extra |= {"genforge_context": {"dropped_messages": window.dropped, "prompt_tokens": len(window.prompt_ids),
                                  "max_tokens": window.max_tokens, "context_length": m.context_length}} \
        if req.genforge_fit_context else {}
    # the template's end of turn joins the user's stop strings (matched on the text, not checked as params)
    stops = params.stop + tuple(s for s in m.template.stop_strings() if s not in params.stop)
    top = (req.top_logprobs or 0) if req.logprobs else 0
    job = TextJob(m, window.prompt_ids, replace(params, max_tokens=window.max_tokens), req.n, stops, req.stream,
                  bool(req.stream_options and req.stream_options.include_usage), req.logprobs, top,
                  extra=extra, slide=slide, finish=grounding_finish(ctx))
    return await respond(request, state, ChatCompletions(), job)
