"""``POST /v1/images/generations``: images from an image model, in OpenAI's shape.

The official client's ``images.generate(model=..., prompt=..., n=..., size=..., response_format="b64_json")``
works unchanged. The prompt picks the class (``ImageModel.class_from_prompt``: the class whose description
is nearest in sentence embeddings); ``genforge_class`` names one directly. genforge's own fields: ``seed``, ``steps``,
``guidance``, ``sampler``. ``size`` is the model's own size or a whole multiple of it (pixels are
repeated, never interpolated). Images come back inline as PNG (``b64_json``) with the settings in
their text chunks; ``url`` is refused, since the server stores nothing.

Generation runs in a worker thread, one request at a time per model (it uses the cores fully), so
the event loop keeps answering ``/health`` and text requests meanwhile.
"""
from __future__ import annotations

import asyncio
import base64
import random
import re
import time
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ...errors import GenforgeError
from ...pipelines.image import DEFAULTS as IMAGE_DEFAULTS
from ...sampling.diffusion import SAMPLERS
from ..schemas import APIError, not_a_bool
from ..state import Served, Server

router = APIRouter()
DEFAULTS = {**IMAGE_DEFAULTS, "n": 1}  # OpenAI's default n; the rest are the library's
MAX_SIZE = 1024


class ImageRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = Field(min_length=1, max_length=256)
    prompt: str = Field(default="", max_length=4000, description="names the class to draw (e.g. 'a sneaker')")
    n: int = Field(default=DEFAULTS["n"], description="images (at most the server's --max-n)")
    size: str | None = Field(default=None, description="'WxH', square: the model's size or a whole multiple")
    response_format: Literal["b64_json", "url"] = "b64_json"
    user: str | None = Field(default=None, max_length=256)
    seed: int | None = Field(default=None, description="same seed and settings: same images; omitted: random")
    steps: int = Field(default=DEFAULTS["steps"], description="sampler steps")
    guidance: float = Field(default=DEFAULTS["guidance"], description="classifier-free guidance scale (1 = none)")
    sampler: str = Field(default=DEFAULTS["sampler"], description="ddpm, ddim, heun or dpmpp_2m")
    truncation: float | None = Field(default=None, description="GAN models: the truncation trick's bound")
    genforge_class: int | str | None = Field(default=None, description="genforge: a class index or name")

    _numbers = field_validator("n", "seed", "steps", "guidance", "truncation", mode="before")(not_a_bool)


def image_settings(m: Served) -> dict:
    """What /v1/models tells about an image model (the studio builds its form from it)."""
    im = m.tm
    return {"size": im.shape[-1], "channels": im.shape[0], "classes": im.classes, "defaults": DEFAULTS,
            "limits": {"steps": {"minimum": 1, "maximum": im.timesteps}, "guidance": {"minimum": 0, "maximum": 30},
                       "samplers": list(SAMPLERS)}}


def _scale(size: str | None, native: int) -> int:
    if size is None:
        return 1
    match = re.fullmatch(r"(\d{1,5})x(\d{1,5})", size)
    w, h = (int(match[1]), int(match[2])) if match else (0, -1)
    if w != h or w < native or w > MAX_SIZE or w % native:
        raise APIError(400, f"size {size!r} is not available: this model draws {native}x{native} images; ask for "
                       f"that or a whole multiple up to {MAX_SIZE} (e.g. {2 * native}x{2 * native})", "size",
                       "invalid_size")
    return w // native


@router.post("/v1/images/generations")
async def generate_images(req: ImageRequest, state: Server):
    m = state.get(req.model, "image")
    im = m.tm
    if req.response_format == "url":
        raise APIError(400, "response_format 'url' is not supported: genforge returns images inline; use "
                       "'b64_json'", "response_format", "invalid_value")
    if req.n > state.settings.max_n:
        raise APIError(400, f"n={req.n} exceeds this server's limit of {state.settings.max_n}", "n", "invalid_value")
    scale = _scale(req.size, im.shape[-1])
    seed = random.randrange(2**31) if req.seed is None else req.seed
    try:
        im.check(n=req.n, steps=req.steps, sampler=req.sampler, guidance=req.guidance, seed=seed)
        cls, matched = None, ""
        if req.genforge_class is not None:
            cls = im.class_id(req.genforge_class)
        elif im.num_classes:
            cls, matched = im.class_from_prompt(req.prompt)
    except GenforgeError as e:
        param = "genforge_class" if req.genforge_class is not None and "class" in str(e) else \
            "prompt" if "prompt" in str(e) else None
        raise APIError(400, str(e), param, "invalid_value") from None
    name = None if cls is None else im.classes[cls] if cls < len(im.classes) else str(cls)
    settings = {"model": m.name, "seed": seed, "steps": req.steps, "sampler": req.sampler,
                "guidance": req.guidance, "class": name, "prompt": req.prompt}
    state.admit()
    try:
        def run():
            with m.busy:
                return im.generate(n=req.n, cls=cls, steps=req.steps, sampler=req.sampler, guidance=req.guidance,
                                   seed=seed, truncation=req.truncation)

        try:
            images = await asyncio.to_thread(run)
        except (GenforgeError, ValueError) as e:
            raise APIError(400, str(e), None, "invalid_value") from None
        except RuntimeError as e:
            raise APIError(500, f"generation failed: {type(e).__name__}", None, None, "server_error") from None
        from ...codecs.image import png_bytes

        data = [{"b64_json": base64.b64encode(png_bytes(img, {**settings, "index": i}, scale)).decode(),
                 "revised_prompt": f"{name} ({matched})" if matched else name}
                for i, img in enumerate(images)]
    finally:
        state.inflight -= 1
    return {"created": int(time.time()), "data": data,
            "genforge": {**settings, "size": f"{im.shape[-1] * scale}x{im.shape[-1] * scale}"}}
