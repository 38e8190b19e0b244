"""The vector index: faiss (Johnson, Douze & Jegou 2019, "Billion-scale similarity search with GPUs").

Vector ``i`` is chunk ``i``: chunks are only ever appended, so the faiss position is the chunk id
and no id map is needed. Scores are inner products of unit vectors (cosine similarity).

Small indexes are ``IndexFlatIP``: exact, no build cost. At ``HNSW_THRESHOLD`` vectors the index
becomes ``IndexHNSWFlat`` (Malkov & Yashunin 2018, "Efficient and robust approximate nearest
neighbor search using Hierarchical Navigable Small World graphs"): a flat scan costs O(n) per
query, HNSW about O(log n). The threshold is where HNSW's latency gain is worth its approximation
(recall@10 < 1) and its build time; benchmarks/retrieval_speed.py measures the three.

Filters run before ranking: faiss only scores ids a selector allows (``SearchParameters(sel=
IDSelectorBatch(ids))``). A filter that allows fewer than ``HNSW_THRESHOLD`` chunks of a large
index is ranked exactly over those chunks' stored vectors instead: on a graph that is mostly
filtered out, HNSW can miss allowed neighbours and return fewer than ``k``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..atomic import atomic_write_bytes
from ..errors import GenforgeError

# vectors; benchmarks/retrieval_speed.py on real MiniLM chunks (2 cores, 1 thread): at 5,000 vectors HNSW
# answers in 0.14 ms against 0.32 ms flat with recall@10 0.994; at 10,000 in 0.20 against 1.14 ms with
# recall@10 1.000 and a 1.2 s build. From 10,000 on, the 5x gain costs no recall there.
HNSW_THRESHOLD = 10_000
HNSW_M = 32  # graph degree: recall@10 ~0.99 on MiniLM vectors with EF_SEARCH below
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 96


def _faiss():
    try:
        import faiss
    except ImportError:
        raise GenforgeError("vector indexes need faiss: pip install faiss-cpu") from None
    return faiss


def kind_of(index) -> str:
    """'flat' or 'hnsw'."""
    return "hnsw" if "HNSW" in type(index).__name__ else "flat"


def new_index(dimension: int):
    return _faiss().IndexFlatIP(dimension)


def _hnsw(vectors: np.ndarray):
    faiss = _faiss()
    index = faiss.IndexHNSWFlat(vectors.shape[1], HNSW_M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    index.hnsw.efSearch = HNSW_EF_SEARCH
    index.add(vectors)
    return index


def all_vectors(index) -> np.ndarray:
    """(ntotal, d) float32 copy of the stored vectors."""
    return index.reconstruct_n(0, index.ntotal) if index.ntotal else np.zeros((0, index.d), np.float32)


def add_vectors(index, vectors: np.ndarray, threshold: int | None = None):
    """Append ``vectors`` (ids continue from ``ntotal``); returns the index, rebuilt as HNSW when
    this addition takes a flat index to ``threshold`` (default ``HNSW_THRESHOLD``) vectors or more."""
    threshold = HNSW_THRESHOLD if threshold is None else threshold
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if kind_of(index) == "flat" and index.ntotal + len(vectors) >= threshold:
        return _hnsw(np.concatenate([all_vectors(index), vectors]))
    index.add(vectors)
    return index


def _exact(index, query: np.ndarray, k: int, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    vecs = index.reconstruct_batch(ids)
    scores = vecs @ query
    k = min(k, len(ids))
    top = np.argpartition(-scores, k - 1)[:k]
    top = top[np.argsort(-scores[top], kind="stable")]
    return ids[top], scores[top]


def search(index, query: np.ndarray, k: int, allowed: np.ndarray | None = None,
           threshold: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(chunk ids, scores), best first, at most ``k``; only ``allowed`` ids when given."""
    faiss = _faiss()
    threshold = HNSW_THRESHOLD if threshold is None else threshold
    query = np.ascontiguousarray(query, dtype=np.float32).reshape(-1)
    if index.ntotal == 0 or (allowed is not None and len(allowed) == 0):
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    hnsw = kind_of(index) == "hnsw"
    if allowed is not None:
        allowed = np.ascontiguousarray(allowed, dtype=np.int64)
        if hnsw and len(allowed) < threshold:
            return _exact(index, query, k, allowed)
        sel = faiss.IDSelectorBatch(allowed)
        params = (faiss.SearchParametersHNSW(sel=sel, efSearch=max(HNSW_EF_SEARCH, 2 * k)) if hnsw
                  else faiss.SearchParameters(sel=sel))
    else:
        params = faiss.SearchParametersHNSW(efSearch=max(HNSW_EF_SEARCH, 2 * k)) if hnsw else None
    scores, ids = index.search(query[None, :], min(k, index.ntotal), params=params)
    keep = ids[0] >= 0
    ids, scores = ids[0][keep], scores[0][keep]
    want = min(k, index.ntotal if allowed is None else len(allowed))
    if hnsw and len(ids) < want:  # the graph search ran dry inside a filter: rank the allowed set exactly
        return _exact(index, query, k, allowed if allowed is not None else np.arange(index.ntotal))
    return ids.astype(np.int64), scores


def write_index(index, path: Path) -> None:
    """Serialize to ``path`` atomically (faiss's own format: no pickles)."""
    atomic_write_bytes(path, _faiss().serialize_index(index).tobytes())


def read_index(path: Path):
    return _faiss().read_index(str(path))
