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

    spec = str(name_or_dir)
    if "+" in spec and not Path(spec).expanduser().exists():  # "base+adapter": a LoRA adapter on its base
        base, *adapters = spec.split("+")
        return _adapted(base, [(a, resolve_model(a)) for a in adapters], kwargs)
    path = resolve_model(name_or_dir)
    if (path / "genforge.json").is_file():
        meta = read_meta(path)
        if meta.get("adapter"):  # an adapter folder alone: on the base it was trained for
            return _adapted(meta["adapter"]["base"], [(spec, path)], kwargs)
        kind = meta.get("pipeline", "text")
        cls = PIPELINES.get(kind, f"the pipeline in {path / 'genforge.json'}", CheckpointError)
        return cls.from_checkpoint(path, meta, **kwargs)
    if is_hf_gpt2_dir(path):
        return PIPELINES.get("text").from_hf_gpt2(path, **kwargs)
    raise CheckpointError(f"{path} is not a genforge model folder")


def _adapted(base: str, adapters: list[tuple[str, Path]], kwargs: dict[str, Any]) -> Any:
    """The text model ``base`` with LoRA adapters folded in; an adapter trained for other base weights is
    refused with both names."""
    from ..checkpoint import read_meta
    from ..errors import CheckpointError
    from ..registry import PIPELINES
    from ..store import resolve_model

    base_path = resolve_model(base)
    base_meta = read_meta(base_path)
    if base_meta.get("adapter"):
        raise CheckpointError(f"{base} is itself an adapter: name its base model before the '+'")
    sha = base_meta.get("files", {}).get("model.safetensors", "")
    loaded = []
    for name, path in adapters:
        meta = read_meta(path)
        info = meta.get("adapter")
        if not info:
            raise CheckpointError(f"{name} is not an adapter (its genforge.json has no adapter section): "
                                  f"'{base}+{name}' needs an adapter trained with [adapter] on {base}")
        if info.get("base_sha256") != sha:
            raise CheckpointError(f"adapter {name} was trained for the base model {info.get('base')!r} (weights "
                                  f"{str(info.get('base_sha256'))[:12]}), not for {base!r} (weights {sha[:12]}): "
                                  f"load it as '{info.get('base')}+{name}'")
        loaded.append((path, meta))
    kind = base_meta.get("pipeline", "text")
    if kind != "text":
        raise CheckpointError(f"adapters apply to text models so far; {base} is a {kind} model")
    return PIPELINES.get("text").from_checkpoint(base_path, base_meta, adapters=loaded, **kwargs)
