"""Decode generated images: model-range tensors to uint8, a grid of samples, PNG files with metadata.

Generators work in [-1, 1]; ``to_uint8`` maps that to 0-255 and ``image_grid`` tiles a batch into
one picture. ``save_png`` encodes in memory and writes the file atomically, so a crash or a full
disk never leaves a half-written PNG behind, and stores the sampling settings in the PNG itself
(one JSON "genforge" chunk for programs, one chunk per key for image viewers), so a picture says
how it was made. torch and Pillow are imported inside the functions to keep this import cheap.
"""
from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..atomic import atomic_write_bytes
from ..errors import DataError

if TYPE_CHECKING:  # pragma: no cover
    import torch

METADATA_KEY = "genforge"


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats (any shape, e.g. (N, C, H, W) or (C, H, W)) to uint8 0-255: clamped and rounded.

    NaN becomes mid-gray (128) rather than an undefined cast, so a diverged sample is visible as a
    flat gray tile instead of random pixels. A uint8 tensor is returned as it is.
    """
    import torch

    if x.dtype == torch.uint8:
        return x
    y = torch.nan_to_num(x.detach().float(), nan=0.0, posinf=1.0, neginf=-1.0)
    return y.clamp(-1.0, 1.0).add(1.0).mul(127.5).round().to(torch.uint8)


def image_grid(images: torch.Tensor, nrow: int | None = None, pad: int = 2, pad_value: int = 255) -> torch.Tensor:
    """Tile uint8 images (N, C, H, W) into one uint8 (C, H', W'): ``nrow`` tiles per row, ``pad`` between.

    ``nrow`` defaults to ceil(sqrt(N)), which gives the squarest grid; tile k sits in row k // nrow,
    column k % nrow (an ``nrow`` above N gives N columns); unused cells and the gaps are ``pad_value``.
    There is no outer border.
    """
    import torch

    if images.dtype != torch.uint8:
        raise ValueError(f"image_grid wants uint8 images, got {images.dtype}; convert with to_uint8 first")
    if images.dim() == 3:
        images = images.unsqueeze(0)
    if images.dim() != 4 or images.shape[0] == 0:
        raise ValueError(f"image_grid wants images (N, C, H, W) with N >= 1, got {tuple(images.shape)}")
    n, c, h, w = images.shape
    cols = nrow if nrow is not None else math.ceil(math.sqrt(n))
    if cols < 1 or pad < 0 or not 0 <= pad_value <= 255:
        raise ValueError(f"image_grid needs nrow >= 1, pad >= 0 and 0 <= pad_value <= 255, got "
                         f"nrow={nrow}, pad={pad}, pad_value={pad_value}")
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    grid = torch.full((c, rows * h + (rows - 1) * pad, cols * w + (cols - 1) * pad), pad_value, dtype=torch.uint8)
    for k in range(n):
        top, left = (k // cols) * (h + pad), (k % cols) * (w + pad)
        grid[:, top:top + h, left:left + w] = images[k]
    return grid


def _keyword_ok(key: str) -> bool:
    """A valid PNG text keyword: 1-79 printable Latin-1 characters, no leading/trailing/double spaces."""
    return (0 < len(key) < 80 and key == key.strip() and "  " not in key
            and all(32 <= ord(ch) <= 126 or 161 <= ord(ch) <= 255 for ch in key))


def _png_info(metadata: dict[str, Any]) -> Any:
    """PngInfo with the JSON chunk plus one chunk per top-level key (values as ``str``)."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    # default=str: a Path or a torch.dtype in the settings must not make saving the picture fail
    info.add_text(METADATA_KEY, json.dumps(metadata, default=str))  # ASCII-only, so always a tEXt chunk
    for key, value in metadata.items():
        key = str(key)
        if key != METADATA_KEY and _keyword_ok(key):  # the JSON chunk holds the keys a viewer cannot
            info.add_text(key, str(value).replace("\0", " "))  # non-Latin-1 text becomes an iTXt chunk
    return info


def png_bytes(image: torch.Tensor, metadata: dict[str, Any] | None = None, scale: int = 1) -> bytes:
    """A uint8 image (C, H, W), C 1 or 3, encoded as PNG in memory (for checkpoint files, HTTP replies).

    ``metadata`` goes into PNG text chunks (see ``read_png_metadata``); ``scale`` > 1 enlarges by
    nearest neighbour, so a 28x28 sample is big enough to look at without blurring it.
    """
    import numpy as np
    import torch
    from PIL import Image

    if (not isinstance(image, torch.Tensor) or image.dtype != torch.uint8 or image.dim() != 3
            or image.shape[0] not in (1, 3)):
        got = f"{image.dtype} {tuple(image.shape)}" if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"a PNG needs a uint8 tensor (C, H, W) with C 1 or 3, got {got}; use to_uint8 "
                         "(and image_grid for a batch) first")
    if not isinstance(scale, int) or isinstance(scale, bool) or scale < 1:
        raise ValueError(f"PNG scale must be a whole number >= 1, got {scale!r}")
    if metadata is not None and not isinstance(metadata, dict):
        raise ValueError(f"PNG metadata must be a dict, got {type(metadata).__name__}")
    pixels = np.ascontiguousarray(image.detach().cpu().permute(1, 2, 0).numpy())
    picture = Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", pnginfo=_png_info(metadata) if metadata else None)
    return buffer.getvalue()


def save_png(image: torch.Tensor, path: str | Path, metadata: dict[str, Any] | None = None,
             scale: int = 1) -> Path:
    """Write ``png_bytes(image, metadata, scale)`` to ``path`` atomically; returns the path.

    The PNG is encoded in memory first, so a failing encoder or a full disk leaves the old file
    (or no file), never half a PNG; missing parent folders are created.
    """
    return atomic_write_bytes(path, png_bytes(image, metadata, scale))


def read_png_metadata(path: str | Path) -> dict[str, Any]:
    """The settings ``save_png`` stored in a PNG (its "genforge" JSON chunk); {} for a PNG without them."""
    from PIL import Image, UnidentifiedImageError

    name = str(path)
    try:
        with Image.open(path) as img:
            if img.format != "PNG":
                raise DataError(f"{name!r} is a {img.format} file, not a PNG; genforge metadata is only in PNGs")
            text = dict(img.text)  # also reads text chunks that come after the pixels
    except FileNotFoundError:
        raise DataError(f"image {name!r} does not exist; check the path") from None
    except UnidentifiedImageError:
        raise DataError(f"{name!r} is not an image; give a PNG written by genforge") from None
    except OSError as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"cannot read PNG {name!r}: {reason}; the file may be truncated") from None
    raw = text.get(METADATA_KEY)
    if raw is None:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise DataError(f"the {METADATA_KEY!r} text in {name!r} is not valid JSON; the PNG was edited or "
                        "not written by genforge") from None
    if not isinstance(data, dict):
        raise DataError(f"the {METADATA_KEY!r} text in {name!r} is not a JSON object; the PNG was not "
                        "written by genforge")
    return data
