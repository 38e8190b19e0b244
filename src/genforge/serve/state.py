"""The served models and the server's counters, shared by every route (``request.app.state.genforge``).

Models are loaded and checked before the server listens (``load_models``): a missing, pickled or
corrupt model, or a chat template this genforge does not know, is one ``GenforgeError`` line, not a
traceback from inside the web server.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request

from ..codecs.chat_template import ChatTemplate, template_for
from ..errors import GenforgeError
from ..sampling.text import eos_id
from .engine import BatchEngine
from .schemas import APIError

if TYPE_CHECKING:
    from .app import ServeSettings


def served_name(spec: str) -> str:
    """The name a model is served under: a bundled name as is, a folder by its last part."""
    return Path(str(spec)).name if "/" in str(spec) else str(spec)


def load_models(settings: ServeSettings, loaded: dict[str, Any] | None = None) -> dict[str, Any]:
    """Served name -> loaded model for every ``settings.models`` entry; raise ``GenforgeError`` on any problem."""
    from ..pipelines import load

    out: dict[str, Any] = {}
    for spec in settings.models:
        name = served_name(spec)
        if name in out:
            raise GenforgeError(f"two models would be served as {name!r}; give each --model a different name")
        pipeline = (loaded or {}).get(spec) or (loaded or {}).get(name) or load(spec, device=settings.device)
        try:
            Served.check(pipeline)
        except GenforgeError as e:
            raise GenforgeError(f"cannot serve {spec!r}: {e}") from None
        out[name] = pipeline
    return out


@dataclass
class Served:
    """One model the server serves, with its batch engine."""

    name: str
    tm: Any  # the loaded pipeline (a TextModel: .model, .codec, .meta, .context_length)
    engine: BatchEngine
    modality: str  # "text" (image, audio, ... pipelines say theirs); /v1/models lists it
    chat: bool  # fine-tuned with a chat template (else chat requests use the default one)
    template: ChatTemplate  # how chat messages become its prompt

    @staticmethod
    def check(pipeline: Any) -> ChatTemplate:
        """The model's chat template, checked against its vocabulary; ``GenforgeError`` if unusable."""
        template = template_for(pipeline.meta)
        if pipeline.meta.get("chat_template"):
            template.check_codec(pipeline.codec)
        return template

    @property
    def context_length(self) -> int:
        return int(self.tm.context_length)


@dataclass
class ServerState:
    settings: ServeSettings
    loaded: dict[str, Any] | None = None  # spec or served name -> an already loaded model
    models: dict[str, Served] = field(default_factory=dict)
    inflight: int = 0  # generation requests admitted and not yet finished

    def start(self) -> None:
        """Load what is not loaded yet and start one batch engine per model (once; ``GenforgeError`` if a
        model cannot be served)."""
        if self.models:
            return
        served = {}
        for name, tm in load_models(self.settings, self.loaded).items():
            if getattr(tm, "modality", "text") != "text":
                raise GenforgeError(f"{name} is an {tm.modality} model: genforge serve serves text models so far; "
                                    "generate its images with `genforge generate --model ...`")
            engine = BatchEngine(tm.model, self.settings.max_batch, self.settings.sliding_window, eos_id(tm.codec))
            served[name] = Served(name, tm, engine, getattr(tm, "modality", "text"),
                                  bool(tm.meta.get("chat_template")), Served.check(tm))
        for m in served.values():  # only once every model can be served
            m.engine.start()
        self.models = served

    def close(self) -> None:
        for m in self.models.values():
            m.engine.stop()

    def get(self, name: str, modality: str = "text") -> Served:
        """The served model ``name`` for a route of ``modality``; an OpenAI 404/400 otherwise."""
        if name not in self.models:
            raise APIError(404, f"model {name!r} does not exist; available: {', '.join(self.models)}", "model",
                           "model_not_found")
        m = self.models[name]
        if m.modality != modality:
            raise APIError(400, f"model {name!r} is a {m.modality} model; this route serves {modality} models",
                           "model", "wrong_modality")
        return m

    def admit(self) -> None:
        """Count one more request in flight, or 429 when the server is at its limit."""
        if self.inflight >= self.settings.max_concurrent:
            raise APIError(429, f"the server is at its limit of {self.settings.max_concurrent} concurrent requests; "
                           "retry shortly", None, "rate_limit_exceeded", "rate_limit_error")
        self.inflight += 1


def server_state(request: Request) -> ServerState:
    """FastAPI dependency: the running server's state."""
    return request.app.state.genforge


Server = Annotated[ServerState, Depends(server_state)]  # a route's ``state: Server`` parameter
