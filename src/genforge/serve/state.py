"""The served models and the server's counters, shared by every route (``request.app.state.genforge``).

Models are loaded and checked before the server listens (``load_models``): a missing, pickled or
corrupt model, or a chat template this genforge does not know, is one ``GenforgeError`` line, not a
traceback from inside the web server.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request

from ..codecs.chat_template import ChatTemplate, template_for
from ..errors import GenforgeError
from ..sampling.text import eos_id
from .engine import BatchEngine
from .grounded import Indexes
from .schemas import APIError

if TYPE_CHECKING:
    from .app import ServeSettings

SERVED_MODALITIES = ("text", "molecule", "image", "music", "speech")
TOKEN_MODALITIES = ("text", "molecule")  # token models over a codec: served by a batch engine


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
    """One model the server serves: a text or molecule model with its batch engine, or an image model."""

    name: str
    tm: Any  # the loaded pipeline (a TextModel or MoleculeModel: .model, .codec, .meta, .context_length; or an
    # ImageModel)
    engine: BatchEngine | None  # text and molecule models: the continuous batcher
    modality: str  # "text", "molecule" or "image" (audio, ... pipelines say theirs); /v1/models lists it
    chat: bool  # fine-tuned with a chat template (else chat requests use the default one)
    template: ChatTemplate | None  # text models: how chat messages become its prompt
    busy: threading.Lock = field(default_factory=threading.Lock)  # image and music models: one at a time

    @staticmethod
    def check(pipeline: Any) -> ChatTemplate | None:
        """A text model's chat template, checked against its vocabulary; ``GenforgeError`` if unusable."""
        if getattr(pipeline, "modality", "text") != "text":
            return None
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
    indexes: Indexes = field(default_factory=Indexes)  # retrieval indexes, opened once
    watermark: Any = None  # the watermark's settings file (safety.watermark.WatermarkFile): POST /v1/detect

    def start(self) -> None:
        """Load what is not loaded yet and start one batch engine per model (once; ``GenforgeError`` if a
        model cannot be served)."""
        if self.models:
            return
        if self.settings.retrieve:  # a missing index: one line before the server listens
            self.indexes.get(self.settings.retrieve)
        mark = self._watermark()
        served = {}
        for name, tm in load_models(self.settings, self.loaded).items():
            modality = getattr(tm, "modality", "text")
            if modality not in SERVED_MODALITIES:
                raise GenforgeError(f"{name} is an {modality} model: genforge serve serves "
                                    f"{', '.join(SERVED_MODALITIES)} models so far")
            engine = None if modality not in TOKEN_MODALITIES else \
                BatchEngine(tm.model, self.settings.max_batch, self.settings.sliding_window, eos_id(tm.codec), mark)
            if mark is not None and engine is not None:
                self.watermark.register(tm.codec, name)  # detection through this codec is then allowed
            served[name] = Served(name, tm, engine, modality, bool(tm.meta.get("chat_template")), Served.check(tm))
        for m in served.values():  # only once every model can be served
            if m.engine is not None:
                m.engine.start()
        self.models = served

    def _watermark(self) -> Any:
        """Open the watermark's settings file (made on first use with --watermark); the settings every reply
        is marked with, or None."""
        if self.settings.watermark or self.settings.watermark_settings:
            from ..safety.watermark import load_watermark

            self.watermark = load_watermark(self.settings.watermark_settings, create=self.settings.watermark)
        return self.watermark.settings if self.settings.watermark else None

    def close(self) -> None:
        for m in self.models.values():
            if m.engine is not None:
                m.engine.stop()

    def get(self, name: str, modality: str | tuple[str, ...] = "text") -> Served:
        """The served model ``name`` for a route of ``modality`` (or of any of several); an OpenAI 404/400
        otherwise."""
        if name not in self.models:
            raise APIError(404, f"model {name!r} does not exist; available: {', '.join(self.models)}", "model",
                           "model_not_found")
        m = self.models[name]
        wanted = (modality,) if isinstance(modality, str) else modality
        if m.modality not in wanted:
            raise APIError(400, f"model {name!r} is {'an' if m.modality[0] in 'aeiou' else 'a'} {m.modality} model; "
                           f"this route serves {' and '.join(wanted)} models",
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
