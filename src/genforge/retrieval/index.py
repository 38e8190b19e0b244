"""Opening and searching a retrieval index: dense (faiss), lexical (BM25) or hybrid.

Hybrid ranking is reciprocal rank fusion (Cormack, Clarke & Buettcher 2009, "Reciprocal Rank
Fusion outperforms Condorcet and individual Rank Learning Methods"): each chunk scores
sum(1 / (60 + rank)) over the dense and the BM25 rankings. RRF needs no score calibration
between cosine similarities and BM25 scores (which live on unrelated scales), and it lets an
exact keyword match (an API name, an error code) that the embedding blurs still reach the top.

Filters (``source`` glob, file ``type``, and any tag given at ``add`` time, e.g. ``tenant``)
select the allowed chunks first; both rankers only ever score allowed chunks, so a filtered-out
document can never take a place in the top k, and k results still come back when the allowed
set holds k chunks.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GenforgeError
from . import embedders, store, vectors

MODES = ("dense", "bm25", "hybrid")
MAX_K = 100
RRF_K = 60  # the constant of Cormack et al.; ranks past ~60 barely count
RRF_DEPTH = 50  # candidates taken from each ranking before fusing
TYPE_ALIASES = {"htm": "html", "markdown": "md", "text": "txt"}


@dataclass(frozen=True)
class Passage:
    """One retrieved chunk."""
    text: str
    source: str  # the document path (plus '#anchor' for HTML sections when known)
    title: str  # section heading, else document title ('' when unknown)
    chunk_id: int
    score: float  # the ranking score (higher is better): cosine (dense), BM25, or RRF (hybrid)
    metadata: dict = field(default_factory=dict)  # path, type, page, heading, anchor, doc_title, tags


@dataclass(frozen=True)
class IndexInfo:
    name: str
    chunks: int  # live chunks (a changed file's old chunks are retired)
    documents: int
    embedder: str
    vector_index: str  # flat | hnsw | none
    size_bytes: int
    path: Path
    updated: str


@dataclass(frozen=True)
class _Doc:
    id: int
    path: str
    kind: str
    title: str
    tags: dict
    first: int
    n: int
    live: bool


def parse_filters(items: list[str] | None, flag: str = "--filter") -> dict[str, str]:
    """``["tenant=acme", "type=html"]`` -> ``{"tenant": "acme", "type": "html"}`` (the CLI's syntax)."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise GenforgeError(f"{flag} {item!r} is not key=value: write e.g. {flag} tenant=acme or "
                                f"{flag} source='*/library/*'")
        if key.strip() in out:
            raise GenforgeError(f"{flag} gives {key.strip()!r} twice: give each key once")
        out[key.strip()] = value.strip()
    return out


def check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise GenforgeError(f"k={k!r} is out of range: ask for 1..{MAX_K} passages")
    return k


class RetrievalIndex:
    """A committed generation of an index, open for searching (thread-safe)."""

    def __init__(self, name: str, folder: Path, manifest: dict[str, Any]) -> None:
        self.name = name
        self.folder = folder
        self.manifest = manifest
        self.embedder: str = manifest["embedder"]
        self.notes: list[str] = []  # what a search fell back to, for the CLI to print
        files = manifest["files"]
        self._db = store.connect(folder / files["chunks"], readonly=True)
        self._vectors = vectors.read_index(folder / files["vectors"]) if "vectors" in files else None
        rows = self._db.execute("SELECT id, path, kind, title, tags, first_chunk, n_chunks, live FROM documents "
                                "ORDER BY id").fetchall()
        self._docs = [_Doc(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5], r[6], bool(r[7])) for r in rows]
        self._doc_by_id = {d.id: d for d in self._docs}
        self.stored_chunks = self._db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
        if self._vectors is not None and self._vectors.ntotal != self.stored_chunks:
            raise GenforgeError(f"index {name!r} is damaged ({self._vectors.ntotal} vectors for "
                                f"{self.stored_chunks} chunks): genforge index rm {name}, then add again")
        self._lock = threading.Lock()
        self._bm25 = None

    def __len__(self) -> int:
        return sum(d.n for d in self._docs if d.live)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> RetrievalIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _allowed(self, filters: dict | None) -> np.ndarray | None:
        """Chunk ids that pass ``filters`` (None: every chunk, no filter needed)."""
        docs = [d for d in self._docs if d.live]
        if not filters and len(docs) == len(self._docs):
            return None
        tag_keys = {k for d in docs for k in d.tags}
        for key, value in (filters or {}).items():
            value = str(value)
            if key == "source":
                glob = value if value.startswith("/") or value.startswith("*") else f"*/{value}"
                docs = [d for d in docs if fnmatch(d.path, glob) or d.path.startswith(value.rstrip("/") + "/")]
            elif key == "type":
                kind = value.lower().lstrip(".")
                docs = [d for d in docs if d.kind == TYPE_ALIASES.get(kind, kind)]
            elif key in tag_keys:
                docs = [d for d in docs if d.tags.get(key) == value]
            else:
                known = ", ".join(["source", "type", *sorted(tag_keys)])
                raise GenforgeError(f"no document in index {self.name!r} has a tag {key!r}: filter on one of {known}")
        if not docs:
            return np.zeros(0, np.int64)
        return np.concatenate([np.arange(d.first, d.first + d.n, dtype=np.int64) for d in docs])

    def _mode(self, mode: str) -> str:
        if mode not in MODES:
            raise GenforgeError(f"mode {mode!r} is unknown: use one of {', '.join(MODES)}")
        if mode == "bm25":
            return mode
        if self._vectors is None:
            if mode == "dense":
                raise GenforgeError(f"index {self.name!r} has no vectors (embedder 'none'): use mode bm25")
            return "bm25"
        if not embedders.available(self.embedder):
            package = embedders.get_embedder(self.embedder).package
            if mode == "dense":
                raise GenforgeError(f"dense search in {self.name!r} needs {package}: pip install {package}")
            self.notes.append(f"{package} is not installed: ranking with BM25 only (pip install {package})")
            return "bm25"
        return mode

    def _dense(self, query: str, n: int, allowed: np.ndarray | None) -> list[tuple[int, float]]:
        q = embedders.embed(self.embedder, [query])[0]
        ids, scores = vectors.search(self._vectors, q, n, allowed)
        return [(int(i), float(s)) for i, s in zip(ids, scores)]

    def _lexical(self, query: str, n: int, allowed: np.ndarray | None) -> list[tuple[int, float]]:
        with self._lock:
            if self._bm25 is None:
                from .bm25 import BM25Ranker

                live = [d for d in self._docs if d.live]
                ids = np.concatenate([np.arange(d.first, d.first + d.n) for d in live]) if live else np.zeros(0)
                rows = self._db.execute("SELECT c.id, c.text FROM chunks c JOIN documents d ON c.doc_id = d.id "
                                        "WHERE d.live = 1 ORDER BY c.id").fetchall()
                if [r[0] for r in rows] != ids.tolist():
                    raise GenforgeError(f"index {self.name!r} is damaged (chunk ids out of order): rebuild it")
                self._bm25 = BM25Ranker([r[1] for r in rows], ids)
        return self._bm25.search(query, n, allowed)

    def search(self, query: str, k: int = 4, filters: dict | None = None, mode: str = "hybrid") -> list[Passage]:
        """The ``k`` best passages for ``query`` among the chunks that pass ``filters``."""
        check_k(k)
        if not isinstance(query, str) or not query.strip():
            raise GenforgeError("the query is empty: ask a question or give keywords")
        mode = self._mode(mode)
        allowed = self._allowed(filters)
        if mode == "dense":
            ranked = self._dense(query, k, allowed)
        elif mode == "bm25":
            ranked = self._lexical(query, k, allowed)
        else:
            depth = max(RRF_DEPTH, 2 * k)
            fused: dict[int, float] = {}
            for ranking in (self._dense(query, depth, allowed), self._lexical(query, depth, allowed)):
                for rank, (cid, _) in enumerate(ranking, start=1):
                    fused[cid] = fused.get(cid, 0.0) + 1.0 / (RRF_K + rank)
            ranked = sorted(fused.items(), key=lambda item: (-item[1], item[0]))[:k]
        return self._passages(ranked)

    def _passages(self, ranked: list[tuple[int, float]]) -> list[Passage]:
        if not ranked:
            return []
        marks = ",".join("?" * len(ranked))
        with self._lock:  # one connection shared by the threads of a server
            rows = {r[0]: r for r in self._db.execute(
                f"SELECT id, doc_id, text, heading, anchor, page, start FROM chunks WHERE id IN ({marks})",
                [cid for cid, _ in ranked])}
        out = []
        for cid, score in ranked:
            _, doc_id, text, heading, anchor, page, start = rows[cid]
            doc = self._doc_by_id[doc_id]
            meta: dict[str, Any] = {"path": doc.path, "type": doc.kind, "doc_title": doc.title, "heading": heading,
                                    "anchor": anchor, "tags": dict(doc.tags), "start": start}
            if page is not None:
                meta["page"] = page
            source = f"{doc.path}#{anchor}" if anchor and doc.kind == "html" else doc.path
            out.append(Passage(text, source, heading or doc.title, cid, score, meta))
        return out


def open_index(name: str) -> RetrievalIndex:
    """Open a committed index; a missing one is an error listing the indexes there are."""
    folder = store.index_dir(name)
    for _ in range(3):  # a writer may replace the generation between reading the manifest and opening it
        manifest = store.read_manifest(name)
        if manifest is None:
            raise store.missing_index(name)
        try:
            return RetrievalIndex(name, folder, manifest)
        except FileNotFoundError:
            continue
    raise GenforgeError(f"index {name!r} kept changing while being opened: try again")


def list_indexes() -> list[IndexInfo]:
    out = []
    for name in store.index_names():
        try:
            m = store.read_manifest(name)
        except GenforgeError:
            continue
        if m is None:
            continue
        folder = store.index_dir(name)
        out.append(IndexInfo(name, m["counts"]["chunks"], m["counts"]["documents"], m["embedder"],
                             m.get("vector_index", "none"), store.folder_bytes(folder), folder, m.get("updated", "")))
    return out


def remove_index(name: str) -> None:
    store.remove(name)
