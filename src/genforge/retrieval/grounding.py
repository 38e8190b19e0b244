"""Grounding check: how well each sentence of an answer is supported by the passages it was given.

Each sentence gets a support score in [0, 1] against the retrieved passages and the number of the
passage that supports it best; a sentence below ``SUPPORT_THRESHOLD`` is flagged as unsupported. When
the sentence itself cites passages (``[2]``), only those count: a citation is checked, not trusted.

The score is the cosine similarity of MiniLM sentence embeddings (the retrieval embedder, Reimers &
Gurevych 2019), the usual cheap stand-in for an entailment model in attribution checks (cf. Rashkin et
al. 2021, "Measuring Attribution in Natural Language Generation Models"); it measures topical and
lexical support, not logical entailment, and says so in the output. Without the embedding package it
falls back to lexical recall: the share of the sentence's content words found in the passage.
Sentences of fewer than ``MIN_WORDS`` words are not judged.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

SUPPORT_THRESHOLD = 0.5
MIN_WORDS = 4

_SENTENCE_END = re.compile(r"[.!?]+[\"')\]]*(?=\s|$)|\n")  # "csv.DictReader" does not end a sentence
_WORD = re.compile(r"[A-Za-z0-9_]+")
_CITES = re.compile(r"\[(\d{1,3})\]")
_STOP_WORDS = ("a an and are as at be but by for from has have i in is it its of on or that the this to was "
               "were will with you your not no so if then than there their they he she we")
_STOP = frozenset(_STOP_WORDS.split())


@dataclass(frozen=True)
class SentenceSupport:
    """One sentence of an answer and how well the passages support it."""

    sentence: str
    start: int  # character offsets in the answer
    end: int
    support: float | None  # in [0, 1]; None: too short to judge
    citation: int | None  # the best-supporting passage's number (1-based), None when unsupported
    supported: bool | None  # None: not judged

    def to_dict(self) -> dict[str, Any]:
        return {"sentence": self.sentence, "start": self.start, "end": self.end,
                "support": None if self.support is None else round(self.support, 4),
                "citation": self.citation, "supported": self.supported}


def split_sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) offsets of the sentences of ``text``: runs ending at . ! ? or a line break."""
    spans = []
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    for s, e in zip([0, *ends], [*ends, len(text)], strict=True):
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if e > s:
            spans.append((s, e))
    return spans


def _content_words(text: str) -> set[str]:
    return {w for w in (x.lower() for x in _WORD.findall(text)) if w not in _STOP and len(w) > 1}


def _lexical(sentences: list[str], passages: Sequence[str]) -> list[list[float]]:
    pw = [_content_words(p) for p in passages]
    out = []
    for s in sentences:
        words = _content_words(s)
        out.append([len(words & p) / len(words) if words else 0.0 for p in pw])
    return out


def _dense(sentences: list[str], passages: Sequence[str]) -> list[list[float]]:
    from ..codecs.sentence import encode

    vectors = encode([*sentences, *passages])
    sims = vectors[: len(sentences)] @ vectors[len(sentences):].T
    return sims.clamp(min=0.0).tolist()


def support_method() -> str:
    """Which score ``check_grounding`` uses on this machine: 'minilm-cosine' or 'lexical-recall'."""
    from ..codecs.sentence import available

    return "minilm-cosine" if available() else "lexical-recall"


def check_grounding(answer: str, passages: Sequence[str], threshold: float = SUPPORT_THRESHOLD,
                    method: str | None = None) -> list[SentenceSupport]:
    """Score every sentence of ``answer`` against ``passages`` (the cited texts, numbered from 1)."""
    spans = split_sentences(answer)
    sentences = [answer[s:e] for s, e in spans]
    judged = [i for i, s in enumerate(sentences) if len(_WORD.findall(_CITES.sub("", s))) >= MIN_WORDS]
    scores: dict[int, list[float]] = {}
    if judged and passages:
        method = method or support_method()
        texts = [_CITES.sub("", sentences[i]) for i in judged]
        rows = _dense(texts, passages) if method == "minilm-cosine" else _lexical(texts, passages)
        scores = dict(zip(judged, rows, strict=True))
    out = []
    for i, ((s, e), sentence) in enumerate(zip(spans, sentences, strict=True)):
        if i not in scores:
            out.append(SentenceSupport(sentence, s, e, None, None, None))  # too short, or nothing to check against
            continue
        row = scores[i]
        cited = [int(n) for n in _CITES.findall(sentence) if 1 <= int(n) <= len(row)]
        candidates = cited or list(range(1, len(row) + 1))
        best = max(candidates, key=lambda n: row[n - 1])
        support = float(min(1.0, row[best - 1]))
        ok = support >= threshold
        out.append(SentenceSupport(sentence, s, e, support, best if ok else None, ok))
    return out


def annotate(answer: str, supports: Sequence[SentenceSupport]) -> str:
    """The answer with each supported sentence's citation appended (``[n]``, unless it cites already) and
    each unsupported sentence marked ``[unsupported]``."""
    out, at = [], 0
    for s in supports:
        out.append(answer[at:s.end])
        at = s.end
        if s.supported and not _CITES.search(s.sentence):
            out.append(f" [{s.citation}]")
        elif s.supported is False:
            out.append(" [unsupported]")
    out.append(answer[at:])
    return "".join(out)
