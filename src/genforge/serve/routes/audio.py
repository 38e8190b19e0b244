"""``POST /v1/audio/speech`` (spoken words) and ``POST /v1/audio/music`` (a piece from a music model).

``/v1/audio/speech`` is OpenAI's route: ``model``, ``input``, ``voice``, ``response_format`` and ``speed``,
so the official client's ``audio.speech.create`` works. The input is one or more words the model knows
(said one after another, 80 ms apart); ``voice`` is any name and picks the sampling seed, so one voice name
gives one rendition; ``response_format`` is ``wav`` (or ``pcm``: 16-bit mono samples at 22,050 Hz).

Shaped after OpenAI's ``/v1/audio/speech``: the body names the ``model`` and what to make, and the reply is
the audio file itself (``response_format``: ``wav``, the default, or ``mid``). ``json`` returns all three
files base64-encoded with what was made (the studio's Sound tab reads this). The piece's conditions
are genforge's fields: ``style``, ``key``, ``meter``, ``seconds``, ``seed``, ``temperature``.

Composition runs in a worker thread, one request at a time per model, so the event loop keeps answering
``/health`` and text requests meanwhile.
"""
from __future__ import annotations

import asyncio
import base64
import random
import time
from typing import Literal

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ...errors import GenforgeError
from ..schemas import APIError, not_a_bool
from ..state import Served, Server

router = APIRouter()
MAX_SECONDS = 120.0  # of music per request
DEFAULT_SECONDS = 30.0


class MusicRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = Field(min_length=1, max_length=256)
    style: str | None = Field(default=None, max_length=64, description="e.g. 'chorale' (default: the model's first)")
    key: str | None = Field(default=None, max_length=32, description="e.g. 'G major' (default: the model chooses)")
    meter: str | None = Field(default=None, max_length=16, description="e.g. '3/4' (default: the model chooses)")
    seconds: float = Field(default=DEFAULT_SECONDS, ge=1.0, le=MAX_SECONDS)
    seed: int | None = Field(default=None, description="same seed and settings: same piece; omitted: random")
    temperature: float = Field(default=1.0, gt=0.0, le=2.0)
    response_format: Literal["wav", "mid", "json"] = "wav"
    user: str | None = Field(default=None, max_length=256)

    _numbers = field_validator("seconds", "seed", "temperature", mode="before")(not_a_bool)


def music_settings(m: Served) -> dict:
    """What /v1/models tells about a music model (the studio builds its form from it)."""
    from ...music import synthesizer_problem

    mm = m.tm
    return {"styles": mm.known("style"), "keys": mm.known("key"), "meters": mm.known("meter"),
            "defaults": {"seconds": DEFAULT_SECONDS, "temperature": 1.0},
            "limits": {"seconds": {"minimum": 1, "maximum": MAX_SECONDS}}, "wav": synthesizer_problem() is None}


def b64(data: bytes | None) -> str | None:
    return base64.b64encode(data).decode() if data is not None else None


def _files(piece, want_wav: bool) -> tuple[bytes, bytes | None, str | None]:
    """MIDI, WAV (or None, with why) of a piece."""
    import tempfile
    from pathlib import Path

    from ...music import midi_bytes, render_wav, synthesizer_problem

    midi = midi_bytes(piece)
    problem = synthesizer_problem() if want_wav else None
    if not want_wav or problem:
        return midi, None, problem
    with tempfile.TemporaryDirectory(prefix="genforge-wav-") as tmp:
        return midi, render_wav(midi, Path(tmp) / "piece.wav").read_bytes(), None


MAX_WORDS = 20  # words one speech request may say
GAP_S = 0.08  # silence between words


class SpeechRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = Field(min_length=1, max_length=256)
    input: str = Field(min_length=1, max_length=4096, description="words the model knows, e.g. 'seven three'")
    voice: str = Field(default="alloy", min_length=1, max_length=64, description="any name: picks the seed")
    response_format: str = Field(default="wav", description="wav or pcm")
    speed: float = Field(default=1.0, ge=0.25, le=4.0)
    instructions: str | None = Field(default=None, max_length=4096, description="accepted and ignored")
    steps: int | None = Field(default=None, description="genforge: sampler steps")

    _numbers = field_validator("speed", "steps", mode="before")(not_a_bool)


def speech_settings(m: Served) -> dict:
    return {"words": list(m.tm.classes), "response_formats": ["wav", "pcm"], "max_words": MAX_WORDS}


@router.post("/v1/audio/speech")
async def speech(req: SpeechRequest, state: Server):
    import hashlib
    import re

    import numpy as np

    m = state.get(req.model, "speech")
    sm = m.tm
    if req.response_format not in ("wav", "pcm"):
        raise APIError(400, f"response_format {req.response_format!r} is not available: genforge writes 'wav' or "
                       "'pcm'", "response_format", "invalid_value")
    words = re.findall(r"[A-Za-z0-9']+", req.input)
    if not 1 <= len(words) <= MAX_WORDS:
        raise APIError(400, f"input has {len(words)} words: give 1 to {MAX_WORDS} words the model knows",
                       "input", "invalid_value")
    try:
        ids = [sm.word_id(w) for w in words]
        if req.steps is not None:
            sm.check(n=1, steps=req.steps, sampler="dpmpp_2m", guidance=2.0, seed=0)
    except GenforgeError as e:
        raise APIError(400, str(e), "steps" if "steps" in str(e) else "input", "invalid_value") from None
    seed = int.from_bytes(hashlib.sha256(req.voice.encode()).digest()[:4], "big")
    state.admit()
    try:
        def run():
            from ...data.speech import SAMPLE_RATE, wav_bytes

            parts = []
            with m.busy:
                for i, c in enumerate(ids):
                    kw = {} if req.steps is None else {"steps": req.steps}
                    _, audio = sm.speak(sm.classes[c], n=1, seed=seed + 7919 * c, **kw)
                    a = audio[0]
                    if req.speed != 1.0:
                        import librosa

                        a = librosa.effects.time_stretch(a, rate=req.speed)
                    parts += [a, np.zeros(int(GAP_S * SAMPLE_RATE), np.float32)] if i < len(ids) - 1 else [a]
            audio = np.concatenate(parts)
            if req.response_format == "pcm":
                return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
            return wav_bytes(audio)

        try:
            data = await asyncio.to_thread(run)
        except RuntimeError as e:
            raise APIError(500, f"speech failed: {type(e).__name__}", None, None, "server_error") from None
    finally:
        state.inflight -= 1
    return Response(data, media_type="audio/wav" if req.response_format == "wav" else "audio/pcm")


@router.post("/v1/audio/music")
async def compose(req: MusicRequest, state: Server):
    m = state.get(req.model, "music")
    mm = m.tm
    seed = random.randrange(2**31) if req.seed is None else req.seed
    try:
        mm.prompt_text(req.style, req.key, req.meter)
    except GenforgeError as e:
        param = next((p for p in ("style", "key", "meter") if p in str(e)), None)
        raise APIError(400, str(e), param, "invalid_value") from None
    if req.response_format == "wav":
        from ...music import synthesizer_problem

        if (problem := synthesizer_problem()) is not None:
            raise APIError(503, f"this server cannot render WAV ({problem}); ask for response_format 'mid'",
                           "response_format", "synthesizer_missing", "server_error")
    state.admit()
    try:
        def run():
            with m.busy:
                d = mm.compose(1, style=req.style, key=req.key, meter=req.meter, seconds=req.seconds, seed=seed,
                               temperature=req.temperature)[0]
                return (d, *_files(d.piece, req.response_format != "mid"))

        try:
            d, midi, wav, problem = await asyncio.to_thread(run)
        except GenforgeError as e:
            raise APIError(400, str(e), None, "invalid_value") from None
        except RuntimeError as e:
            raise APIError(500, f"composition failed: {type(e).__name__}", None, None, "server_error") from None
    finally:
        state.inflight -= 1
    if req.response_format == "wav":
        return Response(wav, media_type="audio/wav")
    if req.response_format == "mid":
        return Response(midi, media_type="audio/midi")
    from ...music import duration_s, piano_roll_png

    p = d.piece
    return {"created": int(time.time()), "model": m.name, "seed": seed, "style": p.style, "key": p.key,
            "meter": p.meter, "seconds": round(duration_s(p), 3), "notes": int(len(p.notes)),
            "malformed_tokens": d.malformed, "midi_b64": b64(midi), "wav_b64": b64(wav),
            "piano_roll_png_b64": b64(piano_roll_png(p)), "wav_problem": problem}
