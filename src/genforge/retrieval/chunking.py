"""Chunking: a document's sections -> overlapping passages of about ``chunk_chars`` characters.

Why these defaults (800 characters, 150 of overlap): all-MiniLM-L6-v2 reads at most 256 word
pieces and truncates the rest silently; English prose runs ~4-5 characters per word piece, so
800 characters (~170-200 pieces) is read whole, while code (denser, ~3 per piece) is mostly read
whole. Smaller chunks rank more precisely but lose the context a reader needs; 800 characters is a
paragraph or two, the size the dense-retrieval literature settles on (DPR, Karpukhin et al. 2020,
uses 100-word passages). The overlap (about two sentences) means a fact that straddles a cut is
whole in at least one chunk.

Cuts go, in order of preference, at a section start (then with no overlap: the next chunk starts
a new heading), a paragraph break, a sentence end, a space, and only then mid-word. The chunks of
a document cover all of its text, and consecutive chunks of one section share the overlap.
"""
from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

from ..errors import GenforgeError

CHUNK_CHARS = 800
OVERLAP = 150
SECTION_GAP = "\n\n"  # sections are joined with a paragraph break
_SENTENCE_END = re.compile(r"[.!?:;][\"')\]]*\s+|\n")
_PARAGRAPH = re.compile(r"\n\s*\n\s*")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Chunk:
    text: str
    start: int  # character offset in the joined document text (``join_sections``)
    end: int
    section: int  # index of the section the chunk starts in


def check_chunking(chunk_chars: int, overlap: int) -> None:
    """The one rule for chunk sizes, shared by the CLI and the library."""
    if not 100 <= chunk_chars <= 20_000:
        raise GenforgeError(f"chunk_chars={chunk_chars} is out of range: use 100..20000 (default {CHUNK_CHARS})")
    if not 0 <= overlap <= chunk_chars // 2:
        raise GenforgeError(f"overlap={overlap} is out of range: use 0..{chunk_chars // 2} (half of chunk_chars; "
                            f"default {OVERLAP})")


def join_sections(sections: list[str]) -> tuple[str, list[int]]:
    """The document's text and where each section starts in it."""
    starts, pos = [], 0
    for s in sections:
        starts.append(pos)
        pos += len(s) + len(SECTION_GAP)
    return SECTION_GAP.join(sections), starts


def _last_end(pattern: re.Pattern, text: str, lo: int, hi: int) -> int | None:
    """The end of the last match of ``pattern`` that ends in (lo, hi]."""
    best = None
    for m in pattern.finditer(text, lo, hi):
        if m.end() > lo:
            best = m.end()
    return best


def _first_end(pattern: re.Pattern, text: str, lo: int, hi: int) -> int | None:
    """The end of the first match of ``pattern`` that ends in [lo, hi)."""
    for m in pattern.finditer(text, max(lo - 1, 0), hi):
        if lo <= m.end() < hi:
            return m.end()
    return None


def _cut(text: str, s: int, n: int, chunk_chars: int, starts: list[int], new_heading: set[int]) -> tuple[int, bool]:
    """Where the chunk that starts at ``s`` ends, and whether that end is a section start: the first
    new heading in reach, else the last section start (short sections under one heading, like the
    entries of an API page, share a chunk)."""
    lo, limit = s + chunk_chars // 4, min(s + chunk_chars, n)
    later = [b for b in starts if lo < b <= limit and b < n]
    headings = [b for b in later if b in new_heading]
    if headings or later:
        return (headings or later[::-1])[0], True
    if limit == n:
        return n, False
    half = s + chunk_chars // 2  # a paragraph or sentence end in the second half, else any space
    for pattern, floor in ((_PARAGRAPH, half), (_SENTENCE_END, half), (_SPACE, lo)):
        end = _last_end(pattern, text, floor, limit)
        if end is not None:
            return end, False
    return limit, False


def _next_start(text: str, s: int, end: int, overlap: int, starts: list[int]) -> int:
    """Back up ``overlap`` characters from ``end``, then forward to a sentence or word start."""
    if overlap == 0:
        return end
    floor = max([s + 1] + [b for b in starts if b <= end])  # never back across a section start
    target = max(end - overlap, floor)
    nxt = _first_end(_SENTENCE_END, text, target, end - overlap // 3) or _first_end(_SPACE, text, target, end)
    return nxt if nxt is not None else target


def chunk_sections(sections: list[str], chunk_chars: int = CHUNK_CHARS, overlap: int = OVERLAP,
                   headings: list[str] | None = None) -> list[Chunk]:
    """Overlapping chunks of the joined sections (whitespace-only chunks dropped, ends trimmed).

    ``headings`` (one per section) tells a new heading from a new entry under the same heading.
    """
    check_chunking(chunk_chars, overlap)
    text, starts = join_sections(sections)
    headings = headings or [str(i) for i in range(len(sections))]
    new_heading = {st for i, st in enumerate(starts) if i == 0 or headings[i] != headings[i - 1]}
    n, s, chunks = len(text), 0, []
    while s < n:
        end, at_section = _cut(text, s, n, chunk_chars, starts, new_heading)
        piece = text[s:end]
        a = s + (len(piece) - len(piece.lstrip()))
        b = s + len(piece.rstrip())
        if b > a:
            chunks.append(Chunk(text[a:b], a, b, bisect.bisect_right(starts, a) - 1))
        if end >= n:
            break
        s = end if at_section else _next_start(text, s, end, overlap, starts)
    return chunks
