"""The OpenAI-compatible HTTP API and the web studio: ``genforge serve``. Wiring only.

The routes live one module per API surface in ``routes/`` (models and health, completions, chat,
embeddings, images, molecules, the studio); the served models in ``state.py``; the text generation
flow in ``textgen.py``. Here: the settings, the error handlers that give every error OpenAI's body, and
``serve``, which loads and checks every model before the server listens.
"""
from __future__ import annotations

import signal
import threading
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import ConfigError
from .routes import audio, chat, completions, detect, embeddings, images, indexes, models, molecules, studio
from .schemas import APIError
from .state import ServerState

MAX_BATCH = 1024  # most rows one engine decodes together


@dataclass
class ServeSettings:
    models: list[str] = field(default_factory=lambda: ["shakespeare-char", "shakespeare-chat"])  # names/folders
    api_key: str | None = None  # None: no auth; else every route but /health and the studio page needs "Bearer KEY"
    max_concurrent: int = 64  # requests in flight before 429
    max_batch: int = 16  # rows decoded together per model
    max_n: int = 8  # cap on `n`
    max_body: int = 1 << 20  # bytes
    device: str = "cpu"
    sliding_window: bool = False  # True: explicit max_tokens may pass the context (the window slides)
    max_sliding_tokens: int = 4096  # most tokens a request that slides past the context may ask for
    safety: str | Any | None = None  # --safety: "default", a TOML file or SafetySettings; None: no filters
    safety_filter: Any = field(default=None, init=False, repr=False, compare=False)  # built from ``safety``
    retrieve: str | None = None  # an index whose passages every text request gets (genforge_retrieve overrides)
    watermark: bool = False  # True: every completion and chat reply carries the green-list watermark
    watermark_settings: str | None = None  # its settings file (default $GENFORGE_HOME/watermark.json); alone:
    # POST /v1/detect only

    def __post_init__(self) -> None:
        for name, flag, low, high in (("max_concurrent", "--max-concurrent", 1, 1 << 20),
                                      ("max_batch", "--max-batch", 1, MAX_BATCH), ("max_n", "--max-n", 1, 128),
                                      ("max_body", "--max-body", 1, 1 << 30),
                                      ("max_sliding_tokens", "--max-sliding-tokens", 1, 1 << 20)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(f"{flag} {value!r} is invalid: allowed an integer from {low} to {high}")
        if not self.models:
            raise ConfigError("no model to serve: give at least one --model")
        if self.safety is not None:  # a bad settings file is one line now, before any model loads
            from ..safety.filters import load_filter

            self.safety_filter = load_filter(self.safety)


def create_app(settings: ServeSettings, loaded: dict | None = None) -> FastAPI:
    """The FastAPI app. ``loaded`` maps names to already loaded models (``serve``, tests, embedding)."""
    state = ServerState(settings, loaded)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state.start()
        yield
        state.close()

    app = FastAPI(title="genforge", version="0.1.0", lifespan=lifespan,
                  description="OpenAI-compatible API for genforge models.")
    app.state.genforge = state
    # a new modality: a module
    for surface in (models, completions, chat, embeddings, images, molecules, audio, indexes, detect, studio):
        app.include_router(surface.router)
    studio.mount(app)

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

    return app


def check_port(port: int) -> None:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfigError(f"--port {port!r} is invalid: allowed an integer from 1 to 65535")


def serve(settings: ServeSettings, host: str = "127.0.0.1", port: int = 8000, loaded: dict | None = None) -> None:
    """Load and check every model, then serve until SIGINT/SIGTERM; in-flight requests drain (up to 30 s).

    A model that cannot be loaded or served raises ``GenforgeError`` before the server listens.
    """
    import uvicorn

    from .guard import Guard

    check_port(port)
    app = create_app(settings, loaded)
    app.state.genforge.start()  # load, check and start every model now, not inside the web server
    print(f"genforge: serving {', '.join(app.state.genforge.models)} on http://{host}:{port}/ "
          f"(API at /v1{', key required' if settings.api_key else ''})", flush=True)
    app = Guard(app, settings.api_key, settings.max_body)
    if threading.current_thread() is threading.main_thread():
        # uvicorn drains on SIGTERM and then re-raises the signal for the handler it found: make that a
        # clean exit (status 0), not death by signal (status -15), so supervisors see a graceful stop
        signal.signal(signal.SIGTERM, _exit_cleanly)
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=30)


def _exit_cleanly(signum, frame) -> None:
    raise SystemExit(0)
