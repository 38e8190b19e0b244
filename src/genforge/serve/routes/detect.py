"""``POST /v1/detect``: does a text carry this server's green-list watermark? (genforge's own route.)

Body ``{"model": ..., "text": ...}``; the text is re-encoded with that model's codec and tested with the
server's watermark settings (``genforge serve --watermark`` or ``--watermark-settings FILE``), as
``genforge detect`` does (``safety.watermark.detect_text``). The answer holds the z-score, the one-sided
p-value, the scored tokens, the green fraction, the verdict and the public settings; never the key.
"""
from __future__ import annotations

import asyncio

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from ...errors import GenforgeError
from ..schemas import APIError
from ..state import Server

router = APIRouter()


class DetectRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = Field(min_length=1, max_length=256, description="the served model whose codec made the text")
    text: str = Field(description="the text (or SMILES, one per line) to test for the watermark")


@router.post("/v1/detect")
async def detect(req: DetectRequest, state: Server):
    from ...safety.watermark import codec_fingerprint, detect_text

    wfile = state.watermark
    if wfile is None:
        raise APIError(400, "this server has no watermark settings: start genforge serve with --watermark (or "
                       "--watermark-settings FILE)", None, "watermark_unavailable")
    m = state.get(req.model, ("text", "molecule"))
    if codec_fingerprint(m.tm.codec) not in wfile.codecs:
        raise APIError(400, f"this server's watermark settings never marked text through {m.name}'s codec: "
                       "detect with the model that made the text", "model", "codec_mismatch")
    if not req.text.strip():
        raise APIError(400, "text is empty: give the text to test", "text", "invalid_text")
    try:
        d = await asyncio.to_thread(detect_text, req.text, m.tm.codec, wfile.settings)
    except GenforgeError as e:  # a character the codec cannot encode
        raise APIError(400, str(e), "text", "invalid_text") from None
    s = wfile.settings
    return {"object": "watermark.detection", "model": m.name, **d.to_dict(),
            "settings": {"gamma": s.gamma, "delta": s.delta, "context": s.context, "scheme": s.scheme,
                         "z_threshold": s.z_threshold, "min_tokens": s.min_tokens}}
