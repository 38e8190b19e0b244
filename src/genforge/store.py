"""Finding models by name: bundled starter models, the user's model store, or any folder.

A name resolves in this order: a folder path that exists; a bundled model shipped inside the
package (``genforge/bundled/NAME``); a model in the user's store (``$GENFORGE_HOME/models/NAME``).
A training run folder resolves to its newest complete checkpoint.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .atomic import LEFTOVERS
from .errors import CheckpointError
from .paths import models_home

BUNDLED = Path(__file__).resolve().parent / "bundled"


def is_hf_gpt2_dir(path: Path) -> bool:
    """A Hugging Face GPT-2 folder: config.json beside model.safetensors (models/gpt2_hf.py reads it)."""
    return (path / "config.json").is_file() and (path / "model.safetensors").is_file()


@dataclass(frozen=True)
class ModelInfo:
    name: str
    path: Path
    source: str  # "bundled" | "local"
    kind: str
    parameters: int
    val_loss: float | None


def _checkpoint_of(folder: Path) -> Path | None:
    from .checkpoint import list_checkpoints

    if (folder / "genforge.json").is_file():
        return folder
    ckpts = list_checkpoints(folder)
    return ckpts[-1] if ckpts else None


def resolve_model(name_or_dir: str | Path) -> Path:
    """The checkpoint folder for a model name, a model folder or a run folder."""
    from .checkpoint import PICKLE_SUFFIXES

    p = Path(name_or_dir).expanduser()
    if p.is_file():
        if p.suffix in PICKLE_SUFFIXES:
            raise CheckpointError(f"{p} is a pickle file; genforge refuses pickles because loading one can run "
                                  "arbitrary code: convert the weights to safetensors")
        raise CheckpointError(f"{p} is a file: pass the model's folder (with genforge.json) instead")
    if p.is_dir():
        found = _checkpoint_of(p)
        if found is not None or is_hf_gpt2_dir(p):
            return found or p
        from .checkpoint import read_meta

        read_meta(p)  # raises the precise reason (pickles only, genforge.json missing, ...)
    text = str(name_or_dir)
    if "/" not in text and "\\" not in text and text not in ("", ".", "..") \
            and not any(mark in text for mark in LEFTOVERS):
        for root in (BUNDLED, models_home()):
            found = _checkpoint_of(root / text) if (root / text).is_dir() else None
            if found is not None:
                return found
    names = ", ".join(m.name for m in list_models()) or "none"
    raise CheckpointError(f"no model named {text!r}: pass a model folder, or one of: {names}")


def list_models() -> list[ModelInfo]:
    """Bundled models, then models in the user's store, each with its size and val loss."""
    out: list[ModelInfo] = []
    for root, source in ((BUNDLED, "bundled"), (models_home(), "local")):
        if not root.is_dir():
            continue
        for d in sorted(root.iterdir()):
            if any(mark in d.name for mark in LEFTOVERS):
                continue  # an interrupted export's temp or moved-aside copy, not a model
            ckpt = _checkpoint_of(d) if d.is_dir() else None
            if ckpt is None:
                continue
            try:
                meta = json.loads((ckpt / "genforge.json").read_text())
                out.append(ModelInfo(d.name, ckpt, source, meta["model"]["kind"], int(meta.get("parameters", 0)),
                                     meta.get("metrics", {}).get("val_loss")))
            except (OSError, ValueError, KeyError):
                continue  # a broken folder in the store is not worth failing the listing for
    return out
