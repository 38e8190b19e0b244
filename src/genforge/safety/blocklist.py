"""Blocklist matching that survives the usual evasions, with matches mapped back to the original text.

Text is first normalized one source character at a time, so every normalized character remembers where
it came from (a match is reported, and an output cut, at the user's own offsets):

- Unicode NFKC (fullwidth and mathematical letters, ligatures), then accents and other combining marks
  dropped (NFD): "ｋｉｌｌ", "𝐤𝐢𝐥𝐥" and "kíll" read as "kill";
- invisible characters dropped: zero-width space/joiners, word joiner, soft hyphen, BOM and every other
  format (Cf) character, so "k\\u200bill" is "kill";
- case folded, and look-alike letters mapped to Latin with the Unicode confusables table (UTS #39,
  section 4) shipped by the ``confusable-homoglyphs`` package: Cyrillic "кіll" and Greek "ΚΙLL" read as
  "kill". A capital is mapped as a capital first (Cyrillic "Н" looks like "H", not like "н"), the
  table's skeleton "l" for capital I-like letters is read as "i", and a small letter the table leaves
  out takes its capital's look-alike (Cyrillic "к" is a small-capital "К").

Patterns (regular expressions) run on that normalized text. Blocklist words and phrases are matched on
its *letter stream*: the letters and digits only, split into pieces where the text had anything else
(spaces, punctuation). A match must start at the start of a piece and end at the end of one, so a word
never fires inside an innocent word ("class", "passage" and "Scunthorpe" do not contain "ass" as a word).
Inside a match a piece boundary is allowed where the entry itself has one (a phrase's spaces, which may
also be left out: "poisonthe well") or between two one-character pieces, which catches spaced-out
letters: "k i l l", "k.i.l.l", "k-i-l-l". Leetspeak
digits (0 1 3 4 5 7) and the symbols @ $ ! | count as letters inside a word that has letters ("k1ll",
"@ss") or as a spaced-out letter; numbers such as "1984" stay numbers.

Entries go through the same normalization, so a list may be written in any case or script.
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from ..errors import ConfigError, GenforgeError

# Invisible characters an evasion inserts inside a word. All are dropped (category Cf covers most; the
# explicit set also catches the Hangul fillers and the combining grapheme joiner, which are not Cf).
INVISIBLE = frozenset("\u200b\u200c\u200d\u2060\u00ad\ufeff\u180e\u034f\u115f\u1160\u3164\uffa0")
LEET = str.maketrans("013457@$!|", "oieastasil")
SYMBOL_LETTERS = "@$"  # a letter beside a letter or digit ("@ss", "a$s")
INNER_SYMBOLS = "!|"  # a letter only between two letters or digits ("k!ll"): "kill!" still ends at "l"
LETTER_SYMBOLS = SYMBOL_LETTERS + INNER_SYMBOLS


@lru_cache(maxsize=1)
def confusables() -> dict[str, str]:
    """Non-ASCII character -> the single ASCII letter or digit it is confusable with (UTS #39 table)."""
    try:
        from confusable_homoglyphs.confusables import confusables_data
    except ImportError:
        raise GenforgeError("the safety filters need the Unicode confusables table: pip install "
                            "confusable-homoglyphs (or genforge[safety])") from None
    table = {}
    for char, glyphs in confusables_data.items():
        if len(char) != 1 or char.isascii():
            continue
        ascii_ = [g["c"] for g in glyphs if len(g["c"]) == 1 and g["c"].isascii() and g["c"].isalnum()]
        if ascii_:
            table[char] = ascii_[0]
    return table


@dataclass(frozen=True)
class Normalized:
    """Normalized text and, per normalized character, the index of the source character it came from."""

    text: str
    origin: tuple[int, ...]
    source_length: int

    def source_index(self, i: int) -> int:
        """Source offset of normalized position ``i`` (the source's length at or past the end)."""
        return self.origin[i] if i < len(self.origin) else self.source_length


def _fold(c: str, table: dict[str, str]) -> str:
    if c.isascii():
        return c.lower()
    mapped = table.get(c)
    if mapped is not None and c != c.lower():  # a capital look-alike maps as a capital
        return "i" if mapped == "l" else mapped.lower()
    # a small letter the table leaves out reads as its capital's look-alike: Cyrillic "к" (small-capital K)
    return "".join(table.get(x) or table.get(x.upper(), x) for x in c.casefold()).lower()


def normalize(text: str) -> Normalized:
    """``text`` with the evasions above undone; see the module docstring."""
    if text.isascii():  # the common case: only the case to fold
        return Normalized(text.lower(), tuple(range(len(text))), len(text))
    table = confusables()
    out: list[str] = []
    origin: list[int] = []
    for i, ch in enumerate(text):
        if ch.isascii():
            out.append(ch.lower())
            origin.append(i)
            continue
        if ch in INVISIBLE or unicodedata.category(ch) == "Cf":
            continue
        for c in unicodedata.normalize("NFD", unicodedata.normalize("NFKC", ch)):
            if unicodedata.combining(c) or c in INVISIBLE:
                continue
            for f in _fold(c, table):
                out.append(f)
                origin.append(i)
    return Normalized("".join(out), tuple(origin), len(text))


@dataclass(frozen=True)
class LetterStream:
    """The letters and digits of a normalized text, split into pieces where it had anything else."""

    letters: str
    position: tuple[int, ...]  # normalized index of each letter
    piece: tuple[int, ...]  # piece number of each letter
    piece_length: tuple[int, ...]  # letters in each piece
    norm: Normalized


def _letter_like(text: str, i: int) -> bool:
    c = text[i]
    if c.isalnum():
        return True
    before = i > 0 and text[i - 1].isalnum()
    after = i + 1 < len(text) and text[i + 1].isalnum()
    return (c in SYMBOL_LETTERS and (before or after)) or (c in INNER_SYMBOLS and before and after)


def _pieces(text: str) -> list[tuple[int, int]]:
    """(start, end) of each run of letter-like characters."""
    if text.isascii() and not any(c in text for c in LETTER_SYMBOLS):
        return [m.span() for m in _ASCII_WORD.finditer(text)]  # the same runs, found in C
    spans, i = [], 0
    while i < len(text):
        if not _letter_like(text, i):
            i += 1
            continue
        j = i
        while j < len(text) and _letter_like(text, j):
            j += 1
        spans.append((i, j))
        i = j
    return spans


_ASCII_WORD = re.compile(r"[A-Za-z0-9]+")


def letter_stream(norm: Normalized) -> LetterStream:
    text = norm.text
    letters: list[str] = []
    position: list[int] = []
    piece: list[int] = []
    lengths: list[int] = []
    for i, j in _pieces(text):
        chunk = text[i:j]
        if len(chunk) == 1 or not chunk.isdigit():  # "k1ll", "k 1 l l"; not "1984"
            chunk = chunk.translate(LEET)
        letters.append(chunk)
        position.extend(range(i, j))
        piece.extend([len(lengths)] * (j - i))
        lengths.append(j - i)
    return LetterStream("".join(letters), tuple(position), tuple(piece), tuple(lengths), norm)


@dataclass(frozen=True)
class Hit:
    """A match: which rule fired and where, as offsets into the checked (source) text."""

    rule: str
    start: int
    end: int


@dataclass(frozen=True)
class _Entry:
    text: str  # as the user wrote it
    key: str  # its letter stream
    joints: frozenset[int]  # offsets in ``key`` where the entry has a piece boundary (a phrase's spaces)


class Blocklist:
    """Words and phrases matched on letter streams (module docstring); ``find`` gives the earliest hit."""

    def __init__(self, entries: Sequence[str], field: str = "blocklist") -> None:
        self.entries: list[_Entry] = []
        for text in dict.fromkeys(entries):  # in order, without repeats
            stream = letter_stream(normalize(text))
            if not stream.letters:
                raise ConfigError(f"safety.{field} entry {text!r} has no letters or digits: use safety.patterns "
                                  "(regular expressions) for punctuation")
            joints = frozenset(k for k in range(1, len(stream.letters)) if stream.piece[k] != stream.piece[k - 1])
            self.entries.append(_Entry(text, stream.letters, joints))
        self.longest = max((len(e.key) for e in self.entries), default=0)  # letters a match spans at most
        self.keys = tuple(e.key for e in self.entries)

    def find(self, stream: LetterStream, final: bool = True) -> Hit | None:
        """The earliest-starting hit in ``stream`` (source offsets), or None.

        With ``final=False`` the text may still grow: a match that ends at its last letter with nothing
        after it (or only one of "@$!|", which a letter would make part of the word) is not reported yet
        ("kill" may become "killer").
        """
        best: tuple[int, _Entry, int] | None = None
        letters = stream.letters
        tail = stream.norm.text[stream.position[-1] + 1:] if stream.position else ""
        open_end = not final and (tail == "" or tail in LETTER_SYMBOLS)  # "kill|" may go on as "kill|ed"
        for entry in self.entries:
            at = letters.find(entry.key)
            while at >= 0 and (best is None or at < best[0]):
                end = at + len(entry.key)
                if self._fits(stream, entry, at, end) and not (open_end and end == len(letters)):
                    best = (at, entry, end)
                    break
                at = letters.find(entry.key, at + 1)
        if best is None:
            return None
        at, entry, end = best
        norm = stream.norm
        return Hit(f"blocklist: {entry.text}", norm.source_index(stream.position[at]),
                   norm.source_index(stream.position[end - 1]) + 1)

    @staticmethod
    def _fits(stream: LetterStream, entry: _Entry, at: int, end: int) -> bool:
        piece, length = stream.piece, stream.piece_length
        if at > 0 and piece[at - 1] == piece[at]:
            return False  # starts inside a word
        if end < len(piece) and piece[end] == piece[end - 1]:
            return False  # ends inside a word
        for k in range(at + 1, end):
            if piece[k] != piece[k - 1] and (k - at) not in entry.joints \
                    and not (length[piece[k - 1]] == 1 and length[piece[k]] == 1):
                return False  # joins words the entry keeps apart ("ki ll"), unless spaced letters
        return True
