"""Rewards for verse, checked offline with the CMU Pronouncing Dictionary (``pip install pronouncing``).

``scan(line)`` reads a line's words in the dictionary (every pronunciation it lists), counts syllables and
compares the stresses with iambic pentameter: ten syllables, the even ones (2, 4, ..., 10) stressed. A
monosyllable may take either stress (English verse treats them so), as may a syllable with secondary
stress. In a longer word, a primary stress on an odd (weak) place costs 2, and an unstressed syllable on an
even (strong) place costs 1: verse often promotes one ("the winter of our DIScontent"). An eleventh
unstressed syllable (a feminine ending, common in Shakespeare) is allowed. A line *scans* when every word is
in the dictionary and some choice of pronunciations gives ten syllables at a cost of at most 1.

Rewards (``list[str] -> list[float]`` in [0, 1], for ``[task] kind = "rl"``; name them as
``reward = "genforge.train.verse:pentameter"``):

* ``pentameter``: the first verse line of each item, graded: 1 when it scans; otherwise the best
  ``syllables * stresses * known`` over the pronunciations, where ``syllables`` = max(0, 1 - |n - 10| / 5),
  ``stresses`` = max(0, 1 - cost / 8) and ``known`` the share of words the dictionary has.
* ``couplet``: the first two verse lines: half the mean of their ``pentameter`` scores, half whether
  their last words rhyme (the same vowel and what follows from the last stressed vowel on; a word does
  not rhyme with itself).

Speaker labels of a play ("ROMEO:", "First Citizen.") and blank lines are not verse lines and are skipped.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from ..errors import ConfigError

FEET, FEMININE = 10, 11
_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)*")
_LABEL = re.compile(r"^[A-Z][A-Za-z']*(?: [A-Z][A-Za-z']*){0,2}[.:]$")  # "ROMEO:", "First Citizen."


def _pronouncing():
    try:
        import pronouncing
    except ImportError:
        raise ConfigError("verse rewards need the CMU Pronouncing Dictionary: pip install pronouncing") from None
    return pronouncing


@lru_cache(maxsize=65536)
def word_stresses(word: str) -> tuple[str, ...]:
    """The stress patterns the dictionary lists for ``word`` ('1' primary, '2' secondary, '0' none), or ()
    when it does not know the word. Elided forms are tried without their apostrophe ("o'er", "'tis")."""
    p = _pronouncing()
    w = word.lower()
    for form in (w, w.replace("'", ""), w.rstrip("s").rstrip("'") if w.endswith("'s") else None):
        if form:
            phones = p.phones_for_word(form)
            if phones:
                return tuple(dict.fromkeys(p.stresses(ph) for ph in phones))
    return ()


@lru_cache(maxsize=65536)
def rhyme_parts(word: str) -> tuple[str, ...]:
    p = _pronouncing()
    return tuple(dict.fromkeys(p.rhyming_part(ph) for ph in p.phones_for_word(word.lower())))


def words(line: str) -> list[str]:
    return _WORD.findall(line)


@dataclass(frozen=True)
class Scansion:
    scans: bool
    score: float
    syllables: int  # of the best reading
    known: float  # share of the line's words in the dictionary


def _cost(pattern: str, start: int) -> int:
    """The metrical cost of one word whose first syllable is place ``start`` (0-based) of the line."""
    cost = 0
    for i, s in enumerate(pattern):
        if len(pattern) == 1 or s == "2":
            continue
        strong = (start + i) % 2 == 1
        cost += 2 if s == "1" and not strong else 1 if s == "0" and strong else 0
    return cost


@lru_cache(maxsize=65536)
def scan(line: str) -> Scansion:
    """How well ``line`` fits iambic pentameter (see the module's doc)."""
    ws = words(line)
    if not ws:
        return Scansion(False, 0.0, 0, 0.0)
    readings = [word_stresses(w) for w in ws]
    known = sum(bool(r) for r in readings) / len(ws)
    # dynamic programme over words: syllables so far -> least cost (unknown words are skipped)
    best: dict[int, int] = {0: 0}
    for options in readings:
        if not options:
            continue
        nxt: dict[int, int] = {}
        for n, v in best.items():
            for pat in options:
                m, u = n + len(pat), v + _cost(pat, n)
                if m <= 2 * FEET and u < nxt.get(m, 1 << 30):
                    nxt[m] = u
        best = nxt or best
    score, syl, scans = 0.0, 0, False
    for n, v in best.items():
        if n == FEMININE and readings[-1] and readings[-1][0][-1] != "1":
            n_eff = FEET  # a feminine ending: the eleventh syllable is unstressed
        else:
            n_eff = n
        s = max(0.0, 1 - abs(n_eff - FEET) / 5) * max(0.0, 1 - v / 8) * known
        if s > score or (s == score and abs(n - FEET) < abs(syl - FEET)):
            score, syl = s, n
        scans = scans or (n_eff == FEET and v <= 1 and known == 1.0)
    return Scansion(scans, 1.0 if scans else score, syl, known)


def rhyme(a: str, b: str) -> bool:
    """Whether the last words of lines ``a`` and ``b`` rhyme (different words, a shared rhyming part)."""
    wa, wb = words(a), words(b)
    if not wa or not wb or wa[-1].lower() == wb[-1].lower():
        return False
    return bool(set(rhyme_parts(wa[-1])) & set(rhyme_parts(wb[-1])))


def verse_lines(text: str, n: int) -> list[str]:
    """The first ``n`` verse lines of ``text`` (blank lines and speaker labels skipped; fewer if it has fewer)."""
    out = []
    for ln in text.split("\n"):
        ln = ln.strip()
        if ln and not _LABEL.match(ln):
            out.append(ln)
            if len(out) == n:
                break
    return out


def pentameter(items: list[str]) -> list[float]:
    """The first verse line's fit to iambic pentameter, in [0, 1] (1: it scans)."""
    out = []
    for text in items:
        lines = verse_lines(text, 1)
        out.append(scan(lines[0]).score if lines else 0.0)
    return out


def couplet(items: list[str]) -> list[float]:
    """A rhyming couplet of pentameters: half the two lines' mean meter score, half whether they rhyme."""
    out = []
    for text in items:
        lines = verse_lines(text, 2)
        if len(lines) < 2:
            out.append(0.5 * scan(lines[0]).score / 2 if lines else 0.0)
            continue
        meter = (scan(lines[0]).score + scan(lines[1]).score) / 2
        out.append(0.5 * meter + 0.5 * float(rhyme(lines[0], lines[1])))
    return out
