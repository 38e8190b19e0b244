"""Music data: music21's offline corpus (Bach chorales, folk tunes in ABC) and the user's MIDI, MusicXML and
ABC files, parsed once into note arrays and cached.

A piece is its notes on a grid of ``RESOLUTION`` steps per quarter note (onset, duration, MIDI pitch,
voice), its barlines, and its key, meter and style. Parsing with music21 is slow (about 0.15 s a chorale),
so a source is parsed once, with a progress bar, and kept as a ``.npz`` of arrays plus a JSON of names;
the cache key covers the source paths, sizes and modification times. Files that fail to parse are
counted, reported and skipped. ``prepare_music_corpus`` writes the training text the token pipeline reads
(``codecs.music``): training pieces in their own key and transposed, then the held-out pieces (every
piece whose name hashes into the held-out tenth, never transposed), and the validation share of tokens
that puts exactly the held-out pieces in the validation split.
"""
from __future__ import annotations

import hashlib
import json
import random
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..atomic import atomic_write_bytes, atomic_write_text
from ..codecs.music import (  # noqa: F401  (the note representation, re-exported for the data layer's users)
    EVENTS_FORMAT,
    PITCH_NAMES,
    PITCH_RANGE,
    RESOLUTION,
    Piece,
    key_pitch_classes,
    parse_key,
    piece_to_text,
    transpose_key,
)
from ..errors import DataError

MAX_VOICES = 4  # parts kept per piece (S, A, T, B for the chorales)
MAX_DURATION = 16 * RESOLUTION  # a note longer than four whole notes is clipped (and counted)
HELD_OUT = 10  # a piece is held out when crc32(name) % HELD_OUT == 0
FORMAT = 1
SUFFIXES = (".mid", ".midi", ".xml", ".mxl", ".musicxml", ".abc", ".krn")
BUILTIN = {"bach-chorales": "chorale", "folk": "folk"}
FOLK_COLLECTIONS = ("essenFolksong", "oneills1850", "ryansMammoth", "airdsAirs")
INSTALL = "pip install 'genforge[music]' (music21, pretty_midi)"


@dataclass
class MusicSet:
    pieces: list[Piece]
    failed: list[str] = field(default_factory=list)  # "name: why" of files that did not parse
    clipped: int = 0  # notes longer than MAX_DURATION, clipped

    def report(self) -> str:
        out = f"{len(self.pieces):,} pieces, {sum(len(p.notes) for p in self.pieces):,} notes"
        if self.failed:
            out += f"; {len(self.failed)} file(s) failed to parse and were skipped (first: {self.failed[0]})"
        if self.clipped:
            out += f"; {self.clipped} over-long note(s) clipped to {MAX_DURATION // RESOLUTION} quarters"
        return out


def _music21():
    try:
        import music21
    except ImportError:
        raise DataError(f"music needs music21: {INSTALL}") from None
    return music21


def _grid(x) -> int:
    return int(round(float(x) * RESOLUTION))


def piece_from_score(score, name: str, style: str) -> tuple[Piece, int]:
    """A music21 score -> (Piece, notes clipped). Ties are merged; chords become one note per pitch; the
    first ``MAX_VOICES`` parts with notes are the voices (a part-less stream is one voice)."""
    m21 = _music21()
    parts = [p for p in getattr(score, "parts", []) if p.recurse().notes] or [score]
    named = [p for p in parts if (getattr(p, "partName", None) or "").lower()[:4] in ("sopr", "alto", "teno", "bass")]
    parts = (named if len(named) == MAX_VOICES else parts)[:MAX_VOICES]
    rows, clipped = [], 0
    for v, part in enumerate(parts):
        for n in part.stripTies(inPlace=False).flatten().notes:
            dur = _grid(n.quarterLength)
            if dur <= 0:  # grace notes
                continue
            if dur > MAX_DURATION:
                dur, clipped = MAX_DURATION, clipped + 1
            on = _grid(n.getOffsetInHierarchy(part) if part is not score else n.offset)
            for p in (n.pitches if isinstance(n, m21.chord.Chord) else (n.pitch,)):
                rows.append((on, dur, int(p.midi), v))
    if not rows:
        raise DataError("it has no notes")
    notes = np.unique(np.asarray(rows, dtype=np.int32), axis=0)  # sorted by onset, then duration...
    notes = notes[np.lexsort((notes[:, 2], notes[:, 3], notes[:, 0]))]  # ...now by onset, voice, pitch
    first = parts[0]
    bars = sorted({_grid(m.getOffsetInHierarchy(first)) for m in first.recurse().getElementsByClass("Measure")})
    meters = list(score.recurse().getElementsByClass("TimeSignature"))
    meter = meters[0].ratioString if meters else "4/4"
    try:
        k = score.analyze("key")
        key = parse_key(f"{k.tonic.name} {k.mode if k.mode in ('major', 'minor') else 'major'}")
    except Exception:  # music21 cannot analyse every stream (a single note, percussion)
        key = "C major"
    return Piece(name, notes, np.asarray(bars, dtype=np.int32), key, meter, style), clipped


def _scores(obj) -> list:
    """An Opus (an ABC file of many tunes) -> its scores; a score -> [score]."""
    m21 = _music21()
    return list(obj.scores) if isinstance(obj, m21.stream.Opus) else [obj]


def _corpus_file(m21, name: str) -> str:
    """A corpus work's file; where it exists in several formats, the MusicXML one."""
    found = m21.corpus.getWork(name)
    if isinstance(found, list):
        found = sorted(found, key=lambda p: Path(p).suffix not in (".mxl", ".xml", ".musicxml"))[0]
    return str(found)


def _sources(spec: str | Path | Sequence[str | Path]) -> list[tuple[str, str]]:
    """(what to parse, style): corpus paths for the built-in names, files for the user's paths."""
    if isinstance(spec, (list, tuple)):
        return [s for item in spec for s in _sources(item)]
    text = str(spec)
    if text == "bach-chorales":
        m21 = _music21()
        return [(_corpus_file(m21, n), "chorale") for n in m21.corpus.chorales.Iterator(returnType="filename")]
    if text == "folk":
        m21 = _music21()
        return [(str(p), "folk") for c in FOLK_COLLECTIONS for p in m21.corpus.getComposer(c)]
    path = Path(text).expanduser()
    if path.is_file():
        return [(str(path), "user")]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
        if not files:
            raise DataError(f"music folder {text!r} has no {', '.join(SUFFIXES)} files")
        return [(str(p), "user") for p in files]
    raise DataError(f"music corpus {text!r} is neither a file, a folder nor a built-in set "
                    f"({', '.join(BUILTIN)})")


def read_file(path: str | Path, style: str = "user") -> tuple[list[Piece], int]:
    """The pieces of one music file (an ABC file may hold many); a file music21 cannot read is a DataError."""
    m21 = _music21()
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        raise DataError(f"{path} is missing or empty")
    try:
        parsed = m21.converter.parse(str(path))
    except Exception as err:  # music21 raises many kinds for a broken file
        raise DataError(f"{path.name} is not a readable MIDI, MusicXML or ABC file ({type(err).__name__})") from None
    pieces, clipped = [], 0
    for i, score in enumerate(_scores(parsed)):
        name = path.stem if i == 0 else f"{path.stem}#{i}"
        try:
            p, c = piece_from_score(score, name, style)
        except DataError:
            continue  # an empty tune inside a collection
        pieces.append(p)
        clipped += c
    if not pieces:
        raise DataError(f"{path.name} has no notes")
    return pieces, clipped


def _cache_key(sources: list[tuple[str, str]]) -> str:
    h = hashlib.sha256(json.dumps({"format": FORMAT, "resolution": RESOLUTION, "voices": MAX_VOICES}).encode())
    for path, style in sources:
        st = Path(path).stat()
        h.update(f"{path}\x00{style}\x00{st.st_size}\x00{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _save(path: Path, ms: MusicSet) -> None:
    import io

    notes = np.concatenate([p.notes for p in ms.pieces]) if ms.pieces else np.zeros((0, 4), np.int32)
    bars = np.concatenate([p.bars for p in ms.pieces]) if ms.pieces else np.zeros(0, np.int32)
    buf = io.BytesIO()
    np.savez(buf, notes=notes, bars=bars, note_counts=np.asarray([len(p.notes) for p in ms.pieces], np.int64),
             bar_counts=np.asarray([len(p.bars) for p in ms.pieces], np.int64))
    atomic_write_bytes(path.with_suffix(".npz"), buf.getvalue())
    atomic_write_text(path.with_suffix(".json"), json.dumps({
        "pieces": [[p.name, p.key, p.meter, p.style] for p in ms.pieces], "failed": ms.failed,
        "clipped": ms.clipped}))


def _load(path: Path) -> MusicSet | None:
    if not (path.with_suffix(".npz").is_file() and path.with_suffix(".json").is_file()):
        return None
    meta = json.loads(path.with_suffix(".json").read_text())
    with np.load(path.with_suffix(".npz"), allow_pickle=False) as z:
        notes = np.split(z["notes"], np.cumsum(z["note_counts"])[:-1]) if len(z["note_counts"]) else []
        bars = np.split(z["bars"], np.cumsum(z["bar_counts"])[:-1]) if len(z["bar_counts"]) else []
    pieces = [Piece(n, a, b, k, m, s) for (n, k, m, s), a, b in zip(meta["pieces"], notes, bars)]
    return MusicSet(pieces, meta["failed"], meta["clipped"])


def load_music(spec: str | Path | Sequence[str | Path], cache_root: Path | None = None,
               progress: bool = True) -> MusicSet:
    """Every piece of a music corpus: ``"bach-chorales"``, ``"folk"``, a file, a folder or a list of them;
    parsed once and cached under ``cache_root`` (default: GENFORGE_HOME's data/music)."""
    from ..paths import data_home

    sources = _sources(spec)
    root = cache_root or data_home() / "music"
    path = root / _cache_key(sources)
    cached = _load(path)
    if cached is not None:
        return cached
    from tqdm.auto import tqdm

    ms = MusicSet([])
    for src, style in tqdm(sources, desc="parsing music", unit="file", disable=not progress or len(sources) < 8,
                           dynamic_ncols=True):
        try:
            pieces, clipped = read_file(src, style)
        except DataError as err:
            ms.failed.append(f"{Path(src).name}: {err}")
            continue
        ms.pieces.extend(pieces)
        ms.clipped += clipped
    if not ms.pieces:
        raise DataError(f"no piece of music could be read from {spec!r}: {ms.report()}")
    root.mkdir(parents=True, exist_ok=True)
    _save(path, ms)
    return ms


def is_held_out(name: str) -> bool:
    return zlib.crc32(name.encode()) % HELD_OUT == 0


def split(ms: MusicSet) -> tuple[list[Piece], list[Piece]]:
    """(training pieces, held-out pieces): a piece's side depends only on its name."""
    train = [p for p in ms.pieces if not is_held_out(p.name)]
    held = [p for p in ms.pieces if is_held_out(p.name)]
    if not held or not train:  # a tiny corpus: hold out the last piece
        train, held = ms.pieces[:-1] or ms.pieces, ms.pieces[-1:]
    return train, held


def transpositions(augment: int) -> list[int]:
    """The semitone shifts of ``augment`` extra copies: +1, -1, +2, -2, ... up to 11 copies."""
    return [s for k in range(1, 7) for s in (k, -k)][:min(augment, 11)]


def prepare_music_corpus(spec: str | Path | Sequence[str | Path], cache_root: Path, augment: int = 0,
                         seed: int = 0) -> tuple[Path, float, str]:
    """Write (once) the token text of a music corpus (``codecs.music``: one piece per line) and return it
    with the validation share of tokens that covers exactly the held-out pieces, and a one-line report."""
    ms = load_music(spec, cache_root)
    key = hashlib.sha256(f"{_cache_key(_sources(spec))}|{augment}|{seed}|{EVENTS_FORMAT}".encode()).hexdigest()[:16]
    path, info = cache_root / f"{key}.tokens.txt", cache_root / f"{key}.tokens.json"
    if path.is_file() and info.is_file():
        meta = json.loads(info.read_text())
        return path, meta["val_fraction"], meta["report"]
    train, held = split(ms)
    lines = [piece_to_text(p) for p in train]
    for s in transpositions(augment):
        lines.extend(piece_to_text(q) for p in train if (q := p.transposed(s)).fits())
    random.Random(seed).shuffle(lines)
    held_lines = [piece_to_text(p) for p in held]
    n_tokens = [len(line.split()) + 2 for line in lines + held_lines]  # + <bos> and <eos>
    val_fraction = sum(n_tokens[len(lines):]) / sum(n_tokens)
    report = (f"{ms.report()}; {len(train)} training pieces ({len(lines):,} with transpositions), "
              f"{len(held)} held out")
    atomic_write_text(path, "".join(line + "\n" for line in lines + held_lines))
    atomic_write_text(info, json.dumps({"val_fraction": val_fraction, "report": report}))
    return path, val_fraction, report


def prepare_recipe_corpus(cfg) -> tuple[Path, float, str]:
    """What the ``lm`` task trains on for a music recipe: the cached event lines of ``data.corpus``
    (``data.augment`` transposed copies of each training piece), the validation share that is the
    held-out pieces, and a report (``registry.CORPORA``)."""
    from ..paths import data_home

    return prepare_music_corpus(cfg.data.corpus, data_home() / "music", cfg.data.augment, cfg.train.seed)
