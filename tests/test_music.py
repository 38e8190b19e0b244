"""Music: the data layer (music21 corpus and user files), the event codec, rendering, statistics and the CLI."""
from __future__ import annotations

import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_config

from genforge.codecs.music import MAX_SHIFT, MusicCodec, piece_to_text, text_to_piece
from genforge.data.music import (
    RESOLUTION,
    Piece,
    key_pitch_classes,
    load_music,
    parse_key,
    piece_from_score,
    prepare_music_corpus,
    split,
    transpose_key,
)
from genforge.errors import DataError
from genforge.eval.music_metrics import compare, in_key_ratio, polyphony, repetition, statistics
from genforge.music import midi_bytes, piece_from_midi_bytes, read_prompt, synthesizer_problem

music21 = pytest.importorskip("music21")


def chorale_pieces(n: int) -> list[Piece]:
    names = list(music21.corpus.chorales.Iterator(returnType="filename"))[:n]
    return [piece_from_score(music21.corpus.parse(name), name, "chorale")[0] for name in names]


@pytest.fixture(scope="module")
def chorales() -> list[Piece]:
    return chorale_pieces(6)


def _round_trips(p: Piece) -> None:
    back = text_to_piece(piece_to_text(p))
    assert back.malformed == 0
    assert np.array_equal(back.piece.notes, p.notes) and np.array_equal(back.piece.bars, p.bars)
    assert (back.piece.key, back.piece.meter, back.piece.style) == (p.key, p.meter, p.style)
    midi = piece_from_midi_bytes(midi_bytes(p), p)
    assert np.array_equal(midi.notes, p.notes)


def test_score_tokens_midi_round_trip_is_exact_on_chorales(chorales):
    for p in chorales:
        assert p.notes[:, 3].max() == 3 and p.key == parse_key(p.key)  # four voices, a canonical key
        _round_trips(p)


@pytest.mark.slow
def test_round_trip_is_exact_on_the_whole_chorale_set(tmp_path):
    ms = load_music("bach-chorales", tmp_path / "cache", progress=False)
    assert len(ms.pieces) == 371 and not ms.failed
    for p in ms.pieces:
        _round_trips(p)


def test_long_rests_become_several_shifts_and_order_is_canonical():
    notes = np.array([[0, 12, 60, 0], [0, 12, 64, 1], [10 * RESOLUTION, 6, 67, 0]], np.int32)
    p = Piece("x", notes, np.array([0, 4 * RESOLUTION], np.int32), "C major", "4/4", "user")
    text = piece_to_text(p)
    assert text.count(f"t:{MAX_SHIFT}") == 2 and text.split()[:4] == ["style:user", "key:C_major", "meter:4/4", "bar"]
    _round_trips(p)


def test_decoding_model_output_skips_and_counts_malformed_tokens():
    d = text_to_piece("style:folk key:D_major v:0 p:62 d:6 p:64 v:1 d:3 t:6 v:0 p:66 d:6 bogus v:2")
    assert d.malformed == 4  # a pitch without a voice, a duration without a pitch, a stray token, a dangling voice
    assert d.piece.notes.tolist() == [[0, 6, 62, 0], [6, 6, 66, 0]] and d.piece.key == "D major"


def test_keys_parse_transpose_and_name_their_scale():
    assert parse_key("Bb major") == parse_key("B- major") == "B- major" and parse_key("f#") == "F# major"
    assert transpose_key("G major", 2) == "A major" and transpose_key("C minor", -1) == "B minor"
    assert key_pitch_classes("A minor") == {9, 11, 0, 2, 4, 5, 7, 8}
    with pytest.raises(DataError, match="'G major'"):
        parse_key("H dorian")


def test_the_codec_learns_its_vocabulary_and_decodes_with_spaces(chorales):
    text = "".join(piece_to_text(p) + "\n" for p in chorales)
    codec = MusicCodec.from_text(text)
    ids = codec.encode(text)
    assert ids.count(codec.bos_id) == ids.count(codec.eos_id) == len(chorales)
    assert codec.decode(ids) == text
    stream = codec.decoder()
    assert "".join(stream.push(i) for i in ids) == text
    with pytest.raises(DataError, match="'p:20'"):
        codec.encode("style:chorale p:20")


def test_user_files_are_read_broken_ones_counted_and_the_cache_reused(tmp_path, chorales):
    folder = tmp_path / "tunes"
    folder.mkdir()
    for i, p in enumerate(chorales[:3]):
        (folder / f"c{i}.mid").write_bytes(midi_bytes(p))
    (folder / "broken.mid").write_bytes(b"MThd not really")
    (folder / "empty.abc").write_text("")
    ms = load_music(str(folder), tmp_path / "cache", progress=False)
    assert len(ms.pieces) == 3 and len(ms.failed) == 2 and "2 file(s) failed" in ms.report()
    first = ms.pieces[0]
    assert first.style == "user" and first.notes[:, 3].max() == 3
    assert np.array_equal(first.notes, chorales[0].notes)  # MIDI from the grid reads back on the grid
    again = load_music(str(folder), tmp_path / "cache", progress=False)
    assert [p.name for p in again.pieces] == [p.name for p in ms.pieces]
    with pytest.raises(DataError, match="neither a file, a folder"):
        load_music(str(tmp_path / "nope"), tmp_path / "cache")


def test_held_out_pieces_are_the_validation_tail_and_never_transposed(tmp_path, chorales):
    folder = tmp_path / "tunes"
    folder.mkdir()
    for i, p in enumerate(chorales):
        (folder / f"c{i}.mid").write_bytes(midi_bytes(p))
    path, val_fraction, report = prepare_music_corpus(str(folder), tmp_path / "cache", augment=2)
    lines = path.read_text().splitlines()
    train, held = split(load_music(str(folder), tmp_path / "cache"))
    assert len(lines) == 3 * len(train) + len(held) and f"{len(held)} held out" in report
    tail = lines[-len(held):]
    assert tail == [piece_to_text(p) for p in held]
    n_tokens = [len(line.split()) + 2 for line in lines]
    assert val_fraction == pytest.approx(sum(n_tokens[-len(held):]) / sum(n_tokens))
    assert not set(tail) & set(lines[:-len(held)])


def test_statistics_measure_what_they_say():
    scale = [60, 62, 64, 65, 67, 69, 71, 72]
    melody = np.array([[i * 12, 12, p, 0] for i, p in enumerate(scale * 2)], np.int32)
    p = Piece("scale", melody, np.zeros(0, np.int32), "C major", "4/4", "user")
    chords = np.array([[t, 12, 60 + v * 4, v] for t in (0, 12, 24) for v in range(4)], np.int32)
    q = Piece("chords", chords, np.zeros(0, np.int32), "C major", "4/4", "user")
    assert in_key_ratio([p]) == 1.0 and polyphony([p]) == 1.0 and polyphony([q]) == 4.0
    assert repetition([p]) > 0.5  # the scale is played twice
    assert all(abs(v) < 1e-12 for v in compare([p, q], [p, q]).values())
    assert compare([p], [q])["pitch_class_distance"] > 0.5
    assert statistics([p])["notes"] == 16


def test_a_prompt_melody_is_shifted_into_range_and_a_broken_file_named(tmp_path, chorales):
    p = chorales[0]
    low = Piece(p.name, p.notes.copy(), p.bars, p.key, p.meter, p.style)
    low.notes[:, 2] -= 36
    (tmp_path / "low.mid").write_bytes(midi_bytes(low))
    melody = read_prompt(tmp_path / "low.mid")
    assert melody.notes[:, 3].max() == 0 and melody.notes[:, 2].min() >= 21
    assert (melody.notes[:, 2].min() - low.notes[low.notes[:, 3] == 0, 2].min()) % 12 == 0
    (tmp_path / "bad.mid").write_text("nope")
    with pytest.raises(DataError, match="bad.mid"):
        read_prompt(tmp_path / "bad.mid")


def train_music_model(tmp: Path, pieces: list[Piece]) -> tuple[Path, Path]:
    """A tiny event-token Transformer (a few seconds; enough steps that it composes notes, not only an end
    token) on ``pieces`` written as a folder of MIDI files; (the run folder, the MIDI folder)."""
    from genforge.train.fit import fit

    folder = tmp / "tunes"
    folder.mkdir()
    for i, p in enumerate(pieces):
        (folder / f"c{i}.mid").write_bytes(midi_bytes(Piece(p.name, p.notes, p.bars, p.key, p.meter, "user")))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENFORGE_HOME", str(tmp / "home"))
        run = fit(tiny_config(tmp, str(folder), codec={"kind": "music"}, data={"augment": 2}, max_steps=120,
                              block_size=64, batch_size=8, lr=3e-3)).out_dir
    return run, folder


@pytest.fixture(scope="module")
def music_model(tmp_path_factory, chorales):
    return train_music_model(tmp_path_factory.mktemp("music"), chorales)


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "genforge", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_compose_runs_past_the_context_and_reproduces_by_seed(music_model):
    import genforge

    mm = genforge.load(music_model[0])
    assert mm.modality == "music" and mm.known("style") == ["user"]
    a = mm.compose(2, key="G major", meter="4/4", seconds=20, seed=3)
    b = mm.compose(2, key="G major", meter="4/4", seconds=20, seed=3)
    assert [x.piece.notes.tolist() for x in a] == [y.piece.notes.tolist() for y in b]
    for d in a:
        assert d.piece.key == "G major" and d.piece.meter == "4/4"
        end = (d.piece.notes[:, 0] + d.piece.notes[:, 1]).max() if len(d.piece.notes) else 0
        assert end * 60 / 100 / RESOLUTION <= 20 + 1e-9  # trimmed to the length asked for


def test_generate_writes_midi_wav_and_a_piano_roll(music_model, tmp_path):
    run, folder = music_model
    r = _cli("generate", "--model", str(run), "--key", "G major", "--seed", "0", "--seconds", "8", "--out", "out",
             cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    mids = list((tmp_path / "out").glob("*.mid"))
    pngs = list((tmp_path / "out").glob("*.png"))
    assert len(mids) == len(pngs) == 1 and pngs[0].read_bytes()[:4] == b"\x89PNG"
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(str(mids[0]))
    assert pm.get_end_time() <= 8.0 + 1e-6
    wavs = list((tmp_path / "out").glob("*.wav"))
    if synthesizer_problem() is None:
        with wave.open(str(wavs[0])) as w:
            assert w.getnframes() / w.getframerate() > 0.5
    else:
        assert not wavs and "apt-get install fluidsynth fluid-soundfont-gm" in r.stdout
    c0 = load_music(str(folder / "c0.mid"), tmp_path / "cache", progress=False).pieces[0]
    tune = c0.notes[c0.notes[:, 3] == 0][:6]
    (tmp_path / "tune.mid").write_bytes(midi_bytes(Piece("tune", tune, c0.bars[:2], c0.key, c0.meter, "user")))
    r = _cli("generate", "--model", str(run), "--prompt-file", "tune.mid", "--seconds", "20", "--seed", "1",
             "--out", "cont", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    head = pretty_midi.PrettyMIDI(str(next((tmp_path / "cont").glob("*.mid")))).instruments[0].notes[:6]
    assert [n.pitch for n in head] == tune[:, 2].tolist()  # the melody comes first, then its continuation


def test_bad_music_requests_get_one_line_and_no_files(music_model, tmp_path):
    run, _ = music_model
    for args, needle in ((("--style", "jazz"), "knows user"), (("--key", "H major"), "'G major'"),
                         (("--prompt-file", "missing.mid"), "missing or empty"),
                         (("--prompt", "x"), "--prompt does not apply to music models"),
                         (("--seconds", "0"), "--seconds 0 is out of range")):
        r = _cli("generate", "--model", str(run), *args, "--out", "o", cwd=tmp_path)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and needle in r.stderr, (args, r.stderr)
        assert not (tmp_path / "o").exists()
    r = _cli("generate", "--key", "G major", cwd=tmp_path)  # the default text model
    assert r.returncode == 2 and "--key applies to music models" in r.stderr


def test_eval_reports_nll_statistics_and_the_floor(music_model, tmp_path):
    run, _ = music_model
    r = _cli("eval", "--model", str(run), "--n", "4", "--json", "m.json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    import json

    rec = json.loads((tmp_path / "m.json").read_text())
    assert rec["samples"] == 4 and rec["generated"]["pieces"] == 4 and rec["nll_per_token"] > 0
    assert set(rec["floor"]) == set(rec["vs_held_out"]) and "floor" in r.stdout


def test_the_core_rnn_learns_music_tokens_too(tmp_path, chorales, home):
    """The same data through the core's LSTM: it trains, and its pieces decode to notes under the conditions."""
    import genforge
    from genforge.train.fit import fit

    folder = tmp_path / "tunes"
    folder.mkdir()
    for i, p in enumerate(chorales):
        (folder / f"c{i}.mid").write_bytes(midi_bytes(p))
    fit(tiny_config(tmp_path, str(folder), model={"kind": "rnn", "block_size": 64}, codec={"kind": "music"},
                    max_steps=30, batch_size=8, lr=1e-2))
    mm = genforge.load(tmp_path / "run")
    assert mm.model.kind == "rnn" and mm.modality == "music"
    d = mm.compose(1, key="A major", meter="4/4", seconds=10, seed=0)[0]
    assert d.piece.key == "A major" and d.tokens > 0
