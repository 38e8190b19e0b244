"""BM25 (Robertson & Zaragoza 2009, "The Probabilistic Relevance Framework: BM25 and Beyond"):
lexical ranking, the no-model fallback, and the exact-keyword half of hybrid ranking.

Built on ``rank_bm25.BM25Okapi`` (k1=1.5, b=0.75) with Lucene's IDF, log(1 + (N - n + 0.5) / (n + 0.5)),
which is never negative: Okapi's own IDF is 0 for a term in half of the chunks and negative above,
so in a small index (two chunks, one with the word) an exact keyword match would score nothing.
The ranker is built from the chunk texts each time an index is
opened for a lexical search: nothing but the texts is stored, so there is no second copy to go
stale and nothing is pickled. The tokenizer keeps identifiers whole (``field_size_limit`` is one
token) and splits dotted names (``csv.DictReader`` -> ``csv``, ``dictreader``), so API names match.
"""
from __future__ import annotations

import math
import re

import numpy as np

from ..errors import GenforgeError

_TOKEN = re.compile(r"[^\W_][\w]*", re.UNICODE)


def tokenize(text: str) -> list[str]:
    """Lower-cased word/identifier tokens."""
    return _TOKEN.findall(text.lower())


def _lucene_bm25(corpus: list[list[str]]):
    from rank_bm25 import BM25Okapi

    class LuceneBM25(BM25Okapi):
        def _calc_idf(self, nd: dict) -> None:  # nd: term -> number of chunks holding it
            self.idf = {t: math.log(1.0 + (self.corpus_size - n + 0.5) / (n + 0.5)) for t, n in nd.items()}

    return LuceneBM25(corpus)


class BM25Ranker:
    """BM25 over a fixed list of chunks; ``ids[i]`` is the chunk id of ``texts[i]``."""

    def __init__(self, texts: list[str], ids: np.ndarray) -> None:
        try:
            import rank_bm25  # noqa: F401
        except ImportError:
            raise GenforgeError("lexical ranking needs rank-bm25: pip install rank-bm25") from None
        if len(texts) != len(ids):
            raise ValueError(f"{len(texts)} texts but {len(ids)} ids")
        self.ids = np.asarray(ids, dtype=np.int64)
        self._row = {int(c): i for i, c in enumerate(self.ids)}
        # BM25Okapi divides by the corpus size: an empty corpus ranks nothing
        self._bm25 = _lucene_bm25([tokenize(t) for t in texts]) if texts else None

    def search(self, query: str, n: int, allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
        """The ``n`` best (chunk id, score) with score > 0, among ``allowed`` chunk ids when given.

        The filter is applied before ranking: only allowed chunks are scored, so the top ``n``
        are the top ``n`` of the allowed set. A chunk sharing no term with the query scores 0
        and is not returned.
        """
        terms = tokenize(query)
        if self._bm25 is None or not terms:
            return []
        if allowed is None:
            rows = np.arange(len(self.ids))
            scores = self._bm25.get_scores(terms)
        else:
            rows = np.array([self._row[int(c)] for c in allowed if int(c) in self._row], dtype=np.int64)
            if rows.size == 0:
                return []
            scores = np.asarray(self._bm25.get_batch_scores(terms, rows.tolist()))
        n = min(n, len(rows))
        top = np.argpartition(-scores, n - 1)[:n]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(int(self.ids[rows[i]]), float(scores[i])) for i in top if scores[i] > 0]
