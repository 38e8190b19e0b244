"""The OpenAI-compatible HTTP API and the web studio: ``genforge serve``.

Routes: GET /health, GET /v1/models, POST /v1/completions, POST /v1/chat/completions (SSE when
``stream``), POST /v1/embeddings, GET / (studio). Every error has OpenAI's body. Validation happens
before any model work; requests past ``max_concurrent`` get 429 at once; a client that goes away
cancels its rows in the batch engine.
"""
from __future__ import annotations

import asyncio
import base64
import json
import signal
import threading
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import GenforgeError
from ..types import SamplingParams
from .engine import BatchEngine
from .runs import GenerationRun
from .schemas import APIError, ChatRequest, CompletionRequest, EmbeddingRequest

STATIC = Path(__file__).resolve().parent / "static"


@dataclass
class ServeSettings:
    models: list[str] = field(default_factory=lambda: ["shakespeare-char", "shakespeare-chat"])  # names/folders
    api_key: str | None = None  # None: no auth; else every route but /health needs "Bearer KEY"
    max_concurrent: int = 64  # requests in flight before 429
    max_batch: int = 16  # rows decoded together per model
    max_n: int = 8  # cap on `n`
    max_body: int = 1 << 20  # bytes
    device: str = "cpu"


@dataclass
class Served:
    name: str
    tm: object  # TextModel
    engine: BatchEngine
    chat: bool


class ServerState:
    def __init__(self, settings: ServeSettings, loaded: dict | None = None) -> None:
        self.settings = settings
        self.loaded = loaded
        self.models: dict[str, Served] = {}
        self.inflight = 0

    def load(self) -> None:
        from ..pipelines.text import load

        for spec in self.settings.models:
            tm = (self.loaded or {}).get(spec) or load(spec, device=self.settings.device)
            name = Path(str(spec)).name if "/" in str(spec) else str(spec)
            engine = BatchEngine(tm.model, self.settings.max_batch)
            engine.start()
            self.models[name] = Served(name, tm, engine, bool(tm.meta.get("chat_template")))

    def close(self) -> None:
        for m in self.models.values():
            m.engine.stop()

    def get(self, name: str) -> Served:
        if name not in self.models:
            raise APIError(404, f"model {name!r} does not exist; available: {', '.join(self.models)}", "model",
                           "model_not_found")
        return self.models[name]


def _params(req, max_tokens: int, stops: tuple[str, ...]) -> SamplingParams:
    return SamplingParams(max_tokens=max_tokens, temperature=req.temperature, top_p=req.top_p,
                          presence_penalty=req.presence_penalty, frequency_penalty=req.frequency_penalty,
                          stop=stops, seed=req.seed)


def _encode(m: Served, text: str, param: str, max_tokens: int | None) -> tuple[list[int], int]:
    """Token ids of ``text`` and the max_tokens to use, with OpenAI-style errors."""
    try:
        ids = m.tm.codec.encode(text)
    except GenforgeError as e:
        raise APIError(400, str(e), param, "invalid_prompt") from None
    ctx = m.tm.context_length
    if not ids:
        raise APIError(400, f"{param} is empty: give at least one token of text", param, "invalid_prompt")
    if max_tokens is None:
        max_tokens = min(256, ctx - len(ids))
    if len(ids) + max_tokens > ctx or max_tokens < 1:
        raise APIError(400, f"this model's maximum context length is {ctx} tokens; the {param} has {len(ids)} "
                       f"tokens and max_tokens is {max_tokens} ({len(ids) + max_tokens} in all): lower max_tokens "
                       "or shorten the input", "max_tokens", "context_length_exceeded")
    return ids, max_tokens


def create_app(settings: ServeSettings, loaded: dict | None = None) -> FastAPI:
    """The FastAPI app. ``loaded`` maps names to already loaded TextModels (tests, embedding)."""
    state = ServerState(settings, loaded)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state.load()
        yield
        state.close()

    app = FastAPI(title="genforge", version="0.1.0", lifespan=lifespan,
                  description="OpenAI-compatible API for genforge models.")
    app.state.genforge = state

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError):
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        err = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        if err.get("type") == "json_invalid":  # loc is ("body", character offset): not a parameter
            at = err.get("loc") or ("?",)
            return APIError(400, f"the request body is not valid JSON ({err.get('msg')} at character {at[-1]})",
                            None, "invalid_json").response()
        loc = [str(x) for x in err.get("loc", ()) if x != "body"]
        where = ".".join(loc) or "body"
        return APIError(400, f"{where}: {err.get('msg')}", loc[-1] if loc else None, "invalid_request").response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        return APIError(exc.status_code, str(exc.detail), None, "not_found" if exc.status_code == 404 else None)\
            .response()

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        return APIError(500, f"internal error: {type(exc).__name__}", None, None, "server_error").response()

    @app.get("/health")
    async def health():
        return {"status": "ok", "models": list(state.models), "inflight": state.inflight}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [
            {"id": m.name, "object": "model", "created": 0, "owned_by": "genforge",
             "genforge_context_length": m.tm.context_length, "genforge_chat": m.chat,
             "genforge_modality": "text"} for m in state.models.values()]}

    def _admit() -> None:
        if state.inflight >= settings.max_concurrent:
            raise APIError(429, f"the server is at its limit of {settings.max_concurrent} concurrent requests; "
                           "retry shortly", None, "rate_limit_exceeded", "rate_limit_error")

    async def _generate(request: Request, req, m: Served, ids: list[int], max_tokens: int, kind: str,
                        extra_stops: tuple[str, ...] = ()):
        if req.n > settings.max_n:
            raise APIError(400, f"n={req.n} exceeds this server's limit of {settings.max_n}", "n")
        stops = req.stop_list()
        stops += tuple(s for s in extra_stops if s not in stops)
        top = (req.logprobs or 0) if kind == "text" else ((req.top_logprobs or 0) if req.logprobs else 0)
        want_lp = req.logprobs is not None if kind == "text" else bool(req.logprobs)
        _admit()
        run = GenerationRun(m.engine, m.tm.codec, ids, _params(req, max_tokens, stops), req.n, stops, top)
        state.inflight += 1
        rid, created = f"{'cmpl' if kind == 'text' else 'chatcmpl'}-{uuid.uuid4().hex[:24]}", int(time.time())
        obj = "text_completion" if kind == "text" else "chat.completion"
        try:
            run.start()
        except RuntimeError as e:
            state.inflight -= 1
            raise APIError(503, str(e), None, "unavailable", "server_error") from None
        if req.stream:
            return StreamingResponse(_sse(request, run, req, m, rid, created, kind, want_lp),
                                     media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        try:
            texts, reasons, lps = [""] * req.n, [None] * req.n, [[] for _ in range(req.n)]
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
                            return JSONResponse({}, status_code=499)
                try:
                    ev = nxt.result()
                except StopAsyncIteration:
                    break
                if ev.error is not None:
                    raise APIError(500, f"generation failed: {ev.error}", None, None, "server_error")
                texts[ev.index] += ev.text
                lps[ev.index].extend(ev.tokens)
                if ev.finish_reason:
                    reasons[ev.index] = ev.finish_reason
        finally:
            run.cancel()
            state.inflight -= 1
        usage = {"prompt_tokens": run.prompt_tokens, "completion_tokens": run.completion_tokens,
                 "total_tokens": run.prompt_tokens + run.completion_tokens}
        choices = []
        for i in range(req.n):
            lp = _logprobs(m, lps[i], kind, top) if want_lp else None
            if kind == "text":
                text = (req.prompt if req.echo and isinstance(req.prompt, str) else "") + texts[i]
                choices.append({"index": i, "text": text, "logprobs": lp, "finish_reason": reasons[i]})
            else:
                choices.append({"index": i, "message": {"role": "assistant", "content": texts[i]},
                                "logprobs": lp, "finish_reason": reasons[i]})
        return {"id": rid, "object": obj, "created": created, "model": m.name, "choices": choices,
                "usage": usage, "system_fingerprint": None}

    async def _sse(request, run: GenerationRun, req, m: Served, rid, created, kind, want_lp):
        obj = "text_completion" if kind == "text" else "chat.completion.chunk"
        include_usage = bool(req.stream_options and req.stream_options.include_usage)

        def chunk(choices, usage=None):
            body = {"id": rid, "object": obj, "created": created, "model": m.name, "choices": choices}
            if include_usage:
                body["usage"] = usage
            return f"data: {json.dumps(body)}\n\n"

        try:
            if kind == "chat":
                yield chunk([{"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                              "finish_reason": None} for i in range(req.n)])
            async for ev in run.events():
                if ev.error is not None:
                    err = APIError(500, f"generation failed: {ev.error}", None, None, "server_error")
                    yield f"data: {json.dumps(err.body())}\n\n"
                    break
                lp = _logprobs(m, ev.tokens, kind, (req.logprobs or 0) if kind == "text" else
                               (req.top_logprobs or 0)) if want_lp and ev.tokens else None
                reason = ev.finish_reason
                if kind == "text":
                    c = {"index": ev.index, "text": ev.text, "logprobs": lp, "finish_reason": reason}
                else:
                    c = {"index": ev.index, "delta": {"content": ev.text} if ev.text else {}, "logprobs": lp,
                         "finish_reason": reason}
                yield chunk([c])
            if include_usage:
                usage = {"prompt_tokens": run.prompt_tokens, "completion_tokens": run.completion_tokens,
                         "total_tokens": run.prompt_tokens + run.completion_tokens}
                body = {"id": rid, "object": obj, "created": created, "model": m.name, "choices": [],
                        "usage": usage}
                yield f"data: {json.dumps(body)}\n\n"
            yield "data: [DONE]\n\n"
        finally:  # normal end, error, or the client went away: free the rows either way
            run.cancel()
            state.inflight -= 1

    @app.post("/v1/completions")
    async def completions(request: Request, req: CompletionRequest):
        m = state.get(req.model)
        if isinstance(req.prompt, list):
            if len(req.prompt) != 1:
                raise APIError(400, "a list prompt must hold exactly one string here; send one request per prompt",
                               "prompt")
            req.prompt = req.prompt[0]
        ids, max_tokens = _encode(m, req.prompt, "prompt", req.max_tokens)
        return await _generate(request, req, m, ids, max_tokens, "text")

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request, req: ChatRequest):
        from .chat_template import template_for

        m = state.get(req.model)
        template = template_for(m.tm.meta)
        try:
            prompt = template.render([msg.model_dump(exclude_none=True) for msg in req.messages])
        except GenforgeError as e:
            raise APIError(400, str(e), "messages") from None
        ids, max_tokens = _encode(m, prompt, "messages", req.max_tokens)
        # the template's end of turn joins the user's stop strings
        return await _generate(request, req, m, ids, max_tokens, "chat", template.stop_strings())

    @app.post("/v1/embeddings")
    async def embeddings(req: EmbeddingRequest):
        import torch

        m = state.get(req.model)
        texts = [req.input] if isinstance(req.input, str) else req.input
        if not texts or len(texts) > 64:
            raise APIError(400, "input must hold 1 to 64 strings", "input")
        rows, total = [], 0
        for t in texts:
            ids, _ = _encode(m, t, "input", 1)
            total += len(ids)
            rows.append(ids)

        def work():
            with torch.inference_mode():
                out = []
                for ids in rows:
                    model = m.tm.model
                    dev = next(model.parameters()).device
                    v = model.embed(torch.tensor([ids], device=dev))[0].float()
                    out.append(torch.nn.functional.normalize(v, dim=0).cpu())
                return out

        vecs = await asyncio.to_thread(work)
        data = []
        for i, v in enumerate(vecs):
            emb = base64.b64encode(v.numpy().astype("<f4").tobytes()).decode() if req.encoding_format == "base64" \
                else v.tolist()
            data.append({"object": "embedding", "index": i, "embedding": emb})
        return {"object": "list", "data": data, "model": m.name,
                "usage": {"prompt_tokens": total, "total_tokens": total}}

    if STATIC.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC), name="static")

        @app.get("/", include_in_schema=False)
        async def studio():
            return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    return app


def _logprobs(m: Served, tokens: list, kind: str, top: int) -> dict:
    codec = m.tm.codec
    text = [codec.decode([t]) for t, _, _ in tokens]
    if kind == "text":
        return {"tokens": text, "token_logprobs": [lp for _, lp, _ in tokens],
                "top_logprobs": [{codec.decode([a]): b for a, b in (alts or [])} for _, _, alts in tokens]
                if top else None, "text_offset": None}
    return {"content": [{"token": s, "logprob": lp, "bytes": list(s.encode()),
                         "top_logprobs": [{"token": codec.decode([a]), "logprob": b, "bytes": list(codec.decode([a])
                                                                                              .encode())}
                                          for a, b in (alts or [])]}
                        for s, (_, lp, alts) in zip(text, tokens)]}


def serve(settings: ServeSettings, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the server until SIGINT/SIGTERM; in-flight requests drain (up to 30 s) before exit."""
    import uvicorn

    from .guard import Guard

    app = Guard(create_app(settings), settings.api_key, settings.max_body)
    if threading.current_thread() is threading.main_thread():
        # uvicorn drains on SIGTERM and then re-raises the signal for the handler it found: make that a
        # clean exit (status 0), not death by signal (status -15), so supervisors see a graceful stop
        signal.signal(signal.SIGTERM, _exit_cleanly)
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=30)


def _exit_cleanly(signum, frame) -> None:
    raise SystemExit(0)
