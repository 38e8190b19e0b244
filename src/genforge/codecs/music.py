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

import numpy as np

from ..errors import DataError
from .lines import SPECIALS, LineTokenCodec

EVENTS_FORMAT = 2  # bumped when the text of a piece changes (the cached corpora are rebuilt)
RESOLUTION = 12  # grid steps per quarter note: exact for 16ths, 32nd-triplets aside, and for 8th/16th triplets
MAX_SHIFT = 4 * RESOLUTION  # one whole note
PITCH_RANGE = (21, 108)  # the piano's range: transpositions that leave it are not made
PITCH_NAMES = ("C", "C#", "D", "E-", "E", "F", "F#", "G", "A-", "A", "B-", "B")
_LETTERS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}


@dataclass
class Piece:
    """One piece on the grid: ``notes`` is int32 (n, 4) rows of onset, duration, pitch, voice (sorted)."""

    name: str
    notes: np.ndarray
    bars: np.ndarray  # barline onsets on the grid, ascending
    key: str  # "G major", "E- minor": a tonic from PITCH_NAMES and a mode
    meter: str  # "3/4"
    style: str  # "chorale", "folk" or "user"

    def transposed(self, semitones: int) -> Piece:
        notes = self.notes.copy()
        notes[:, 2] += semitones
        return Piece(self.name, notes, self.bars, transpose_key(self.key, semitones), self.meter, self.style)

    def fits(self) -> bool:
        return len(self.notes) == 0 or (PITCH_RANGE[0] <= self.notes[:, 2].min()
                                        and self.notes[:, 2].max() <= PITCH_RANGE[1])


def parse_key(text: str) -> str:
    """``"G major"``, ``"g minor"``, ``"Bb major"``, ``"F#"`` (major) -> the canonical ``"G major"`` form."""
    parts = str(text).strip().replace("_", " ").split()
    mode = parts[1].lower() if len(parts) == 2 else "major" if len(parts) == 1 else ""
    tonic = parts[0] if parts else ""
    if mode not in ("major", "minor") or not tonic or tonic[0].upper() not in _LETTERS \
            or any(c not in "#b-" for c in tonic[1:]):
        raise DataError(f"key {text!r} is not a key: write a tonic and a mode, like 'G major', 'F# minor' or "
                        "'Bb major'")
    pc = _LETTERS[tonic[0].upper()] + tonic[1:].count("#") - tonic[1:].count("b") - tonic[1:].count("-")
    return f"{PITCH_NAMES[pc % 12]} {mode}"


def transpose_key(key: str, semitones: int) -> str:
    tonic, mode = parse_key(key).split()
    return f"{PITCH_NAMES[(PITCH_NAMES.index(tonic) + semitones) % 12]} {mode}"


def key_pitch_classes(key: str) -> set[int]:
    """The scale's pitch classes (natural minor plus the raised 7th for minor keys)."""
    tonic, mode = parse_key(key).split()
    t = PITCH_NAMES.index(tonic)
    steps = (0, 2, 4, 5, 7, 9, 11) if mode == "major" else (0, 2, 3, 5, 7, 8, 10, 11)
    return {(t + s) % 12 for s in steps}




def tokenize(line: str) -> list[str]:
    return line.split()


class MusicCodec(LineTokenCodec):
    """Token <-> id over the event vocabulary of a music corpus (specials first, then sorted)."""

    kind = "music"
    what = "music"
    pipeline = "music"
    separator = " "
    tokenize = staticmethod(tokenize)


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
    for b in bars[bi:]:  # barlines after the last note begins (the final barline)
        out += _shift(b - now) + ["bar"]
        now = b
    return " ".join(out)


@dataclass
class Decoded:
    piece: Piece
    malformed: int  # tokens that did not fit the grammar (skipped)
    tokens: int = 0  # tokens sampled for it (compose)


def text_to_piece(text: str, name: str = "generated") -> Decoded:
    """A token line (or several: they are read as one stream) back into a piece. Condition tokens (style,
    key, meter) count once each, before the first event; a repeated or late one is malformed (skipped and
    counted)."""
    style, key, meter = "user", "C major", "4/4"
    rows, bars, now, bad = [], [], 0, 0
    voice = pitch = None
    started, given = False, set()
    for tok in text.split():
        kind, _, val = tok.partition(":")
        try:
            if kind in ("style", "key", "meter"):
                if started or kind in given:
                    raise ValueError
                given.add(kind)
            started = started or tok == "bar" or kind in ("t", "v", "p", "d")
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
