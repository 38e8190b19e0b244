"""``GET /health`` and ``GET /v1/models``: what is served, each model's modality and its defaults.

Each model entry carries genforge fields beside OpenAI's: its modality, context length, whether it
is a chat model, and ``genforge_sampling``: the defaults and ranges of its parameters (from
``SamplingParams``), which the studio shows instead of keeping a copy. Molecule models also carry
``genforge_molecule`` (codec, the scores each molecule comes with, defaults); music models
``genforge_music`` (styles, keys, meters, defaults, whether WAV can be rendered); speech models
``genforge_speech`` (the words they say).
"""
from __future__ import annotations

from fastapi import APIRouter

from ...types import SAMPLING_RANGES, sampling_defaults
from ..state import Served, Server

router = APIRouter()
STUDIO_PARAMS = ("max_tokens", "temperature", "top_p", "seed")  # the parameters the studio's controls set
BOUNDED = ("max_tokens", "temperature", "top_p")  # those with a slider or number field to bound


@router.get("/health")
async def health(state: Server):
    return {"status": "ok", "models": list(state.models), "inflight": state.inflight}


def sampling(m: Served) -> dict:
    """Defaults (max_tokens None: what fits the context) and JSON Schema bounds of the text parameters."""
    defaults = {**sampling_defaults(*STUDIO_PARAMS), "max_tokens": None, "stop": []}
    limits = {name: SAMPLING_RANGES[name].json_schema() for name in BOUNDED}
    limits["max_tokens"]["maximum"] = m.context_length - 1
    return {"defaults": defaults, "limits": limits}


def entry(m: Served) -> dict:
    out = {"id": m.name, "object": "model", "created": 0, "owned_by": "genforge", "genforge_modality": m.modality}
    if m.modality == "text":
        return {**out, "genforge_context_length": m.context_length, "genforge_chat": m.chat,
                "genforge_sampling": sampling(m)}
    if m.modality == "molecule":
        from .molecules import molecule_settings

        settings = molecule_settings(m)
        sampled = sampling(m)
        sampled["defaults"]["max_tokens"] = settings["defaults"]["max_tokens"]
        return {**out, "genforge_context_length": m.context_length, "genforge_chat": False,
                "genforge_sampling": sampled, "genforge_molecule": settings}
    if m.modality == "music":
        from .audio import music_settings

        return {**out, "genforge_music": music_settings(m)}
    if m.modality == "speech":
        from .audio import speech_settings

        return {**out, "genforge_speech": speech_settings(m)}
    from .images import image_settings

    return {**out, "genforge_image": image_settings(m)}


@router.get("/v1/models")
async def models(state: Server):
    return {"object": "list", "data": [entry(m) for m in state.models.values()]}
