"""``POST /v1/completions``: continue a prompt (OpenAI's legacy completions API); text and molecule models
(``routes/molecules.py``: a SMILES fragment in, molecules with their scores out)."""
from __future__ import annotations

from dataclasses import replace

from fastapi import APIRouter, Request

from ...errors import GenforgeError
from ...types import Codec
from ..context_fit import ContextLengthError, fit_max_tokens
from ..grounded import citations_extra, grounding_finish, request_context
from ..schemas import APIError, ChatRequest, CompletionRequest
from ..state import Served, Server
from ..textgen import TextJob, TextSurface, Token, check_input, respond

router = APIRouter()


class Completions(TextSurface):
    object = chunk_object = "text_completion"
    id_prefix = "cmpl"

    def choice(self, index, text, logprobs, finish_reason):
        return {"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish_reason}

    def delta(self, ev, logprobs):
        return self.choice(ev.index, ev.text, logprobs, ev.finish_reason)

    def logprobs(self, codec: Codec, tokens: list[Token], top: int) -> dict:
        return {"tokens": [codec.decode([t]) for t, _, _ in tokens], "token_logprobs": [lp for _, lp, _ in tokens],
                "top_logprobs": [{codec.decode([a]): b for a, b in (alts or [])} for _, _, alts in tokens]
                if top else None, "text_offset": None}


def encode(m: Served, text: str, param: str) -> list[int]:
    """Token ids of request text, or a 400 naming ``param`` (text outside the vocabulary, empty text)."""
    try:
        ids = m.tm.codec.encode(text)
    except GenforgeError as e:
        raise APIError(400, str(e), param, "invalid_prompt") from None
    if not ids:
        raise APIError(400, f"{param} is empty: give at least one token of text", param, "invalid_prompt")
    return ids


def sliding(req: CompletionRequest | ChatRequest, m: Served, limit: int) -> bool:
    """Whether the request slides past the context: its own choice, else the server's setting; a request
    that slides may ask for at most ``limit`` tokens."""
    slide = m.engine.sliding_window if req.genforge_sliding_window is None else req.genforge_sliding_window
    if slide and req.max_tokens is not None and req.max_tokens > limit:
        raise APIError(400, f"max_tokens={req.max_tokens} exceeds this server's limit of {limit} tokens for "
                       "generation that slides past the context (--max-sliding-tokens)", "max_tokens",
                       "invalid_value")
    return slide


def context_error(e: ContextLengthError) -> APIError:
    return APIError(400, str(e), "max_tokens", "context_length_exceeded")


@router.post("/v1/completions")
async def completions(request: Request, req: CompletionRequest, state: Server):
    m = state.get(req.model, ("text", "molecule"))
    params = req.sampling_params()
    prompt = req.prompt
    if isinstance(prompt, list):
        if len(prompt) != 1:
            raise APIError(400, "a list prompt must hold exactly one string here; send one request per prompt",
                           "prompt")
        prompt = prompt[0]
    check_input(state, m, [prompt], "prompt")  # --safety: a blocked prompt is refused before any work
    surface, asked = Completions(), req.max_tokens
    if m.modality == "molecule":  # a SMILES fragment ("" = from scratch); choices carry their scores
        from .molecules import MoleculeCompletions, default_max_tokens, molecule_prompt

        prompt, ids = molecule_prompt(m, prompt)
        surface = MoleculeCompletions(prompt, prompt if req.echo else "")
        asked = default_max_tokens(m, len(ids)) if asked is None else asked
    else:
        ids = encode(m, prompt, "prompt")
    ctx = await request_context(state.indexes, m, req, state.settings.retrieve, prompt, len(ids))
    if ctx is not None:  # the sources block before the prompt (echo still shows the prompt alone)
        ids = encode(m, ctx.block + prompt, "prompt")
    slide = sliding(req, m, state.settings.max_sliding_tokens)
    try:
        max_tokens = fit_max_tokens(len(ids), m.context_length, asked, slide=slide)
    except ContextLengthError as e:
        raise context_error(e) from None
    job = TextJob(m, ids, replace(params, max_tokens=max_tokens), req.n, params.stop, req.stream,
                  bool(req.stream_options and req.stream_options.include_usage), req.logprobs is not None,
                  req.logprobs or 0, prompt if req.echo else "", slide=slide, extra=citations_extra(ctx),
                  finish=grounding_finish(ctx))
    return await respond(request, state, surface, job)
