"""Pipelines: encode -> (retrieve) -> predict -> sample -> decode, one per modality.

``load`` finds a model folder and hands it to the pipeline its ``genforge.json`` names
(``registry.PIPELINES``; checkpoints written before pipelines were recorded are text).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any


def load(name_or_dir: str | Path, **kwargs: Any) -> Any:
    """Load a bundled model by name (``"shakespeare-char"``), a model or run folder, or a Hugging Face
    GPT-2 folder (config.json + model.safetensors, with ``tokenizer.json`` beside it for text).

    Keyword arguments go to the pipeline (text: ``device``, ``quantize="int8"``, ``dtype``).
    """
    from ..checkpoint import read_meta
    from ..errors import CheckpointError
    from ..registry import PIPELINES
    from ..store import is_hf_gpt2_dir, resolve_model

    path = resolve_model(name_or_dir)
    if (path / "genforge.json").is_file():
        meta = read_meta(path)
        kind = meta.get("pipeline", "text")
        cls = PIPELINES.get(kind, f"the pipeline in {path / 'genforge.json'}", CheckpointError)
        return cls.from_checkpoint(path, meta, **kwargs)
    if is_hf_gpt2_dir(path):
        return PIPELINES.get("text").from_hf_gpt2(path, **kwargs)
    raise CheckpointError(f"{path} is not a genforge model folder")
