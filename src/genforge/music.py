"""Music out: MIDI files (pretty_midi), WAV through FluidSynth with a General MIDI soundfont, piano-roll PNGs,
and MIDI in (a melody to continue).

FluidSynth is a real synthesizer: Debian's ``fluidsynth`` and ``fluid-soundfont-gm`` (or a soundfont named by
``GENFORGE_SOUNDFONT``). Without it MIDI and the piano roll are still written and the message names the
packages. Every file appears whole or not at all.
"""
from __future__ import annotations

import io
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from .atomic import atomic_write_bytes
from .data.music import PITCH_RANGE, RESOLUTION, Piece
from .errors import DataError, GenforgeError

TEMPO = {"chorale": 80.0, "folk": 110.0}  # quarter notes a minute when rendering; others: DEFAULT_TEMPO
DEFAULT_TEMPO = 100.0
PROGRAMS = {"chorale": 19, "folk": 73}  # General MIDI: church organ, flute; others: acoustic grand piano
SOUNDFONTS = ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/default-GM.sf2",
              "/usr/share/soundfonts/default.sf2")
SYNTH_HELP = "install a synthesizer: apt-get install fluidsynth fluid-soundfont-gm (or set GENFORGE_SOUNDFONT)"
SAMPLE_RATE = 44_100


def tempo_of(piece: Piece) -> float:
    return TEMPO.get(piece.style, DEFAULT_TEMPO)


def seconds_per_step(piece: Piece) -> float:
    return 60.0 / tempo_of(piece) / RESOLUTION


def duration_s(piece: Piece) -> float:
    if not len(piece.notes):
        return 0.0
    return float((piece.notes[:, 0] + piece.notes[:, 1]).max()) * seconds_per_step(piece)


def trim(piece: Piece, seconds: float) -> Piece:
    """The notes that start before ``seconds`` (cut to end there): a piece of that length at most."""
    end = int(seconds / seconds_per_step(piece))
    keep = piece.notes[piece.notes[:, 0] < end].copy()
    keep[:, 1] = np.minimum(keep[:, 1], end - keep[:, 0])
    return Piece(piece.name, keep, piece.bars[piece.bars < end], piece.key, piece.meter, piece.style)


def midi_bytes(piece: Piece) -> bytes:
    """A type-1 MIDI file of the piece: one track per voice, its tempo, meter and key."""
    import pretty_midi

    tempo, step = tempo_of(piece), seconds_per_step(piece)
    pm = pretty_midi.PrettyMIDI(initial_tempo=tempo, resolution=RESOLUTION * 40)
    try:
        num, den = (int(x) for x in piece.meter.split("/"))
        pm.time_signature_changes.append(pretty_midi.TimeSignature(num, den, 0.0))
    except ValueError:
        pass
    tonic, mode = piece.key.split()
    try:
        pm.key_signature_changes.append(pretty_midi.KeySignature(
            pretty_midi.key_name_to_key_number(f"{tonic.replace('-', 'b')} {mode}"), 0.0))
    except ValueError:
        pass
    program = PROGRAMS.get(piece.style, 0)
    for v in sorted(set(piece.notes[:, 3].tolist())):
        inst = pretty_midi.Instrument(program=program, name=f"voice {v}")
        for on, dur, pitch, _ in piece.notes[piece.notes[:, 3] == v].tolist():
            inst.notes.append(pretty_midi.Note(velocity=80, pitch=int(pitch), start=on * step,
                                               end=(on + dur) * step))
        pm.instruments.append(inst)
    buf = io.BytesIO()
    pm.write(buf)
    return buf.getvalue()


def piece_from_midi_bytes(data: bytes, like: Piece) -> Piece:
    """Read back a MIDI file written by ``midi_bytes`` (``like`` gives the tempo, key, meter and style): notes
    on the grid, one voice per track. Used to check MIDI round trips."""
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(io.BytesIO(data))
    step = seconds_per_step(like)
    rows = [(round(n.start / step), round((n.end - n.start) / step), n.pitch, int(inst.name.split()[-1]))
            for inst in pm.instruments for n in inst.notes]
    notes = np.asarray(rows, np.int32).reshape(-1, 4)
    notes = notes[np.lexsort((notes[:, 2], notes[:, 3], notes[:, 0]))]
    return Piece(like.name, notes, like.bars, like.key, like.meter, like.style)


def read_prompt(path: str | Path) -> Piece:
    """The melody of a MIDI, MusicXML or ABC file to continue: its first voice, shifted by octaves into the
    playable range; a file without notes or one far outside the range is a one-line DataError."""
    from .data.music import read_file

    pieces, _ = read_file(path)
    p = pieces[0]
    notes = p.notes[p.notes[:, 3] == p.notes[:, 3].min()].copy()
    notes[:, 3] = 0
    lo, hi = int(notes[:, 2].min()), int(notes[:, 2].max())
    if hi - lo > PITCH_RANGE[1] - PITCH_RANGE[0]:
        raise DataError(f"{Path(path).name} spans MIDI pitches {lo}..{hi}, wider than the range {PITCH_RANGE}")
    shift = 0
    while lo + shift < PITCH_RANGE[0]:
        shift += 12
    while hi + shift > PITCH_RANGE[1]:
        shift -= 12
    notes[:, 2] += shift
    return Piece(p.name, notes, p.bars, p.key, p.meter, p.style)


def soundfont() -> Path | None:
    env = os.environ.get("GENFORGE_SOUNDFONT")
    for cand in ([env] if env else []) + list(SOUNDFONTS):
        if cand and Path(cand).is_file():
            return Path(cand)
    return None


def synthesizer_problem() -> str | None:
    """None when WAV can be rendered, else why not and what to install."""
    if shutil.which("fluidsynth") is None:
        return f"no fluidsynth program: {SYNTH_HELP}"
    if soundfont() is None:
        return f"no General MIDI soundfont: {SYNTH_HELP}"
    return None


def render_wav(midi: bytes, out: str | Path, sample_rate: int = SAMPLE_RATE) -> Path:
    """MIDI bytes -> a WAV file through FluidSynth (written to a temporary file, then moved into place)."""
    problem = synthesizer_problem()
    if problem:
        raise GenforgeError(problem)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".render-") as tmp:
        mid, wav = Path(tmp) / "in.mid", Path(tmp) / "out.wav"
        mid.write_bytes(midi)
        cmd = ["fluidsynth", "-ni", "-q", "-g", "0.7", "-r", str(sample_rate), "-T", "wav", "-F", str(wav),
               str(soundfont()), str(mid)]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if res.returncode != 0 or not wav.is_file() or wav.stat().st_size <= 44:
            why = (res.stderr or res.stdout).strip()[:200]
            raise GenforgeError(f"fluidsynth failed (exit {res.returncode}): {why}")
        os.replace(wav, out)
    return out


def piano_roll_png(piece: Piece, title: str = "") -> bytes:
    """The notes as bars over time and pitch, a colour per voice, barlines dotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    step = seconds_per_step(piece)
    fig, ax = plt.subplots(figsize=(12, 4), dpi=100)
    colors = ("#c0392b", "#2471a3", "#229954", "#7d3c98")
    for on, dur, pitch, v in piece.notes.tolist():
        ax.add_patch(plt.Rectangle((on * step, pitch - 0.4), dur * step, 0.8, color=colors[v % len(colors)], lw=0))
    for b in piece.bars.tolist():
        ax.axvline(b * step, color="#999", lw=0.5, ls=":")
    if len(piece.notes):
        ax.set_xlim(0, duration_s(piece))
        ax.set_ylim(piece.notes[:, 2].min() - 2, piece.notes[:, 2].max() + 2)
    ax.set_xlabel("seconds")
    ax.set_ylabel("MIDI pitch")
    ax.set_title(title or f"{piece.style}, {piece.key}, {piece.meter}")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def save_piece(piece: Piece, stem: str | Path, wav: bool = True) -> tuple[list[Path], str | None]:
    """``stem``.mid, .png and (when a synthesizer is there) .wav; returns the files and, when the WAV could
    not be made, why."""
    stem = Path(stem)
    midi = midi_bytes(piece)
    written = [atomic_write_bytes(stem.with_suffix(".mid"), midi),
               atomic_write_bytes(stem.with_suffix(".png"), piano_roll_png(piece))]
    problem = synthesizer_problem() if wav else None
    if wav and problem is None:
        written.append(render_wav(midi, stem.with_suffix(".wav")))
    return written, problem
