"""Statistics of generated music against held-out music, with the floor between two halves of the held-out set.

The statistics follow the spirit of Yang & Lerch 2020 ("On the evaluation of generative models in music",
Neural Comput. Appl. 32): distributions of musical features over a set of pieces, compared set to set.

- **pitch-class histogram distance**: L1 distance between the sets' pitch-class histograms, each note's
  pitch class taken relative to its piece's tonic (so a set in G and a set in D compare by function);
- **duration distance**: total variation distance between the note-duration distributions;
- **in-key ratio**: the share of notes whose pitch class is in the piece's key (minor with its raised 7th);
- **polyphony**: notes sounding at once, averaged over the grid steps where any sounds;
- **repetition**: the share of the top voice's 4-note figures (interval and duration pairs) that occur
  more than once in their piece, a self-similarity measure.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from ..data.music import PITCH_NAMES, Piece, key_pitch_classes, parse_key


def _tonic(p: Piece) -> int:
    return PITCH_NAMES.index(parse_key(p.key).split()[0])


def pitch_class_histogram(pieces: Sequence[Piece]) -> np.ndarray:
    h = np.zeros(12)
    for p in pieces:
        if len(p.notes):
            h += np.bincount((p.notes[:, 2] - _tonic(p)) % 12, minlength=12)
    return h / max(h.sum(), 1)


def duration_distribution(pieces: Sequence[Piece]) -> Counter:
    c: Counter = Counter()
    for p in pieces:
        c.update(p.notes[:, 1].tolist())
    total = sum(c.values()) or 1
    return Counter({k: v / total for k, v in c.items()})


def in_key_ratio(pieces: Sequence[Piece]) -> float:
    shares = []
    for p in pieces:
        if len(p.notes):
            scale = key_pitch_classes(p.key)
            shares.append(float(np.isin(p.notes[:, 2] % 12, list(scale)).mean()))
    return float(np.mean(shares)) if shares else float("nan")


def polyphony(pieces: Sequence[Piece]) -> float:
    counts = []
    for p in pieces:
        if len(p.notes):
            end = int((p.notes[:, 0] + p.notes[:, 1]).max())
            sounding = np.zeros(end + 1, np.int32)
            np.add.at(sounding, p.notes[:, 0], 1)
            np.add.at(sounding, p.notes[:, 0] + p.notes[:, 1], -1)
            live = np.cumsum(sounding)[:end]
            counts.append(live[live > 0])
    return float(np.concatenate(counts).mean()) if counts else float("nan")


def repetition(pieces: Sequence[Piece], n: int = 4) -> float:
    shares = []
    for p in pieces:
        top = p.notes[p.notes[:, 3] == p.notes[:, 3].min()] if len(p.notes) else p.notes
        if len(top) <= n:
            continue
        top = top[np.unique(top[:, 0], return_index=True)[1]]  # one note per onset (its lowest)
        feats = list(zip(np.diff(top[:, 2]).tolist(), top[1:, 1].tolist()))
        grams = [tuple(feats[i:i + n]) for i in range(len(feats) - n + 1)]
        if grams:
            c = Counter(grams)
            shares.append(sum(v for v in c.values() if v > 1) / len(grams))
    return float(np.mean(shares)) if shares else float("nan")


def statistics(pieces: Sequence[Piece]) -> dict:
    return {"pieces": len(pieces), "notes": int(sum(len(p.notes) for p in pieces)),
            "pitch_classes": pitch_class_histogram(pieces).round(4).tolist(),
            "in_key": in_key_ratio(pieces), "polyphony": polyphony(pieces), "repetition": repetition(pieces)}


def compare(a: Sequence[Piece], b: Sequence[Piece]) -> dict:
    """Distances between two sets of pieces (the ``a`` side's statistics minus or against ``b``'s)."""
    da, db = duration_distribution(a), duration_distribution(b)
    return {"pitch_class_distance": float(np.abs(pitch_class_histogram(a) - pitch_class_histogram(b)).sum()),
            "duration_distance": 0.5 * sum(abs(da.get(k, 0) - db.get(k, 0)) for k in set(da) | set(db)),
            "in_key_difference": in_key_ratio(a) - in_key_ratio(b),
            "polyphony_difference": polyphony(a) - polyphony(b),
            "repetition_difference": repetition(a) - repetition(b)}


def halves(pieces: Sequence[Piece]) -> tuple[list[Piece], list[Piece]]:
    """The floor's two sides: alternate pieces, so each half spans the whole set."""
    return list(pieces[0::2]), list(pieces[1::2])


def format_report(gen: dict, held: dict, vs: dict, floor: dict) -> str:
    rows = [("pitch-class histogram distance (L1)", vs["pitch_class_distance"], floor["pitch_class_distance"]),
            ("note-duration distance (TV)", vs["duration_distance"], floor["duration_distance"]),
            ("in-key ratio difference", vs["in_key_difference"], floor["in_key_difference"]),
            ("polyphony difference", vs["polyphony_difference"], floor["polyphony_difference"]),
            ("repetition difference", vs["repetition_difference"], floor["repetition_difference"])]
    out = [f"{'':38} {'generated':>10} {'held-out':>10}",
           f"{'in-key ratio':38} {gen['in_key']:>10.3f} {held['in_key']:>10.3f}",
           f"{'polyphony (notes sounding)':38} {gen['polyphony']:>10.3f} {held['polyphony']:>10.3f}",
           f"{'repetition (repeated 4-note figures)':38} {gen['repetition']:>10.3f} {held['repetition']:>10.3f}",
           "", f"{'':38} {'vs held-out':>11} {'floor':>8}"]
    out += [f"{name:38} {v:>11.4f} {f:>8.4f}" for name, v, f in rows]
    return "\n".join(out)
