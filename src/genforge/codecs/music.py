"""Music codec: a piece as a line of event tokens (``codecs.lines``: one piece per line, a newline ends it).

A line starts with the piece's conditions, then its events in time order (an event tokenization in the
manner of Oore et al. 2018, "This time with feeling", and Huang & Yang 2020's REMI, on a fixed grid):

- ``style:chorale`` / ``style:folk`` / ``style:user``, ``key:G_major``, ``meter:3/4``: what to write;
- ``bar``: a barline at the current time;
- ``t:N``: time moves on by N grid steps (``data.music.RESOLUTION`` a quarter; at most ``MAX_SHIFT``,
  longer rests are several shifts);
- ``v:K p:N d:M``: a note in voice K (0 = the top part), MIDI pitch N, lasting M grid steps, starting now.

Notes at one time are written in voice, then pitch order, so the text of a piece is unique, and
``text_to_piece(piece_to_text(p))`` gives back ``p``'s notes and barlines exactly (tested on every
chorale). Decoding model output is lenient: an incomplete note or a stray token is counted and skipped.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data.music import RESOLUTION, Piece, parse_key
from .lines import SPECIALS, LineTokenCodec

MAX_SHIFT = 4 * RESOLUTION  # one whole note


def tokenize(line: str) -> list[str]:
    return line.split()


class MusicCodec(LineTokenCodec):
    """Token <-> id over the event vocabulary of a music corpus (specials first, then sorted)."""

    kind = "music"
    what = "music"
    pipeline = "music"
    separator = " "
    tokenize = staticmethod(tokenize)

    @staticmethod
    def prepare_corpus(cfg: Any) -> tuple[Path, float, str]:
        """The cached event lines of a recipe's music corpus (``data.music``; ``data.augment`` transposed
        copies of each training piece), the validation share that is the held-out pieces, and a report."""
        from ..data.music import prepare_music_corpus
        from ..paths import data_home

        return prepare_music_corpus(cfg.data.corpus, data_home() / "music", cfg.data.augment, cfg.train.seed)


def key_token(key: str) -> str:
    return "key:" + parse_key(key).replace(" ", "_")


def header(style: str, key: str, meter: str) -> list[str]:
    return [f"style:{style}", key_token(key), f"meter:{meter}"]


def _shift(steps: int) -> list[str]:
    out = []
    while steps > 0:
        out.append(f"t:{min(steps, MAX_SHIFT)}")
        steps -= MAX_SHIFT
    return out


def piece_to_text(p: Piece) -> str:
    """The token line of a piece (without the newline)."""
    out = header(p.style, p.key, p.meter)
    now = 0
    bars = [int(b) for b in p.bars]
    bi = 0
    for onset, dur, pitch, voice in p.notes.tolist():
        while bi < len(bars) and bars[bi] <= onset:
            out += _shift(bars[bi] - now) + ["bar"]
            now, bi = bars[bi], bi + 1
        out += _shift(onset - now)
        now = onset
        out += [f"v:{voice}", f"p:{pitch}", f"d:{dur}"]
    return " ".join(out)


@dataclass
class Decoded:
    piece: Piece
    malformed: int  # tokens that did not fit the grammar (skipped)
    tokens: int = 0  # tokens sampled for it (compose)


def text_to_piece(text: str, name: str = "generated") -> Decoded:
    """A token line (or several: they are read as one stream) back into a piece."""
    style, key, meter = "user", "C major", "4/4"
    rows, bars, now, bad = [], [], 0, 0
    voice = pitch = None
    for tok in text.split():
        kind, _, val = tok.partition(":")
        try:
            if tok == "bar":
                bars.append(now)
            elif kind == "t":
                now += int(val)
            elif kind == "v":
                bad += voice is not None  # a voice left without its note
                voice, pitch = int(val), None
            elif kind == "p":
                if voice is None or pitch is not None:
                    raise ValueError
                pitch = int(val)
            elif kind == "d":
                if voice is None or pitch is None or int(val) <= 0:
                    raise ValueError
                rows.append((now, int(val), pitch, voice))
                voice = pitch = None
            elif kind == "style":
                style = val
            elif kind == "key":
                key = parse_key(val)
            elif kind == "meter":
                meter = val
            elif tok not in SPECIALS:
                raise ValueError
        except Exception:  # a stray or malformed token: skipped and counted
            bad += 1
            voice = pitch = None
    bad += voice is not None
    notes = np.asarray(rows, dtype=np.int32).reshape(-1, 4)
    if len(notes):
        notes = notes[np.lexsort((notes[:, 2], notes[:, 3], notes[:, 0]))]
    return Decoded(Piece(name, notes, np.asarray(sorted(set(bars)), np.int32), key, meter, style), bad)
