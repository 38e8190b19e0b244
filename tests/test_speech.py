"""Speech: espeak-ng words as log-mel spectrograms, Griffin-Lim back to audio, the speech pipeline and its CLI."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("librosa")
if shutil.which("espeak-ng") is None:
    pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)", allow_module_level=True)

from genforge.data.speech import (  # noqa: E402
    FRAMES,
    N_MELS,
    WORDS,
    clip_plan,
    load_spoken_words,
    spectrogram,
    synthesize,
    to_audio,
    wav_bytes,
)
from genforge.errors import DataError  # noqa: E402


def test_the_corpus_covers_every_word_in_disjoint_voices_and_is_cached(tmp_path):
    train, test = clip_plan("train", 3), clip_plan("test", 3)
    assert {v.split("+")[1] for _, v, _, _ in train}.isdisjoint({v.split("+")[1] for _, v, _, _ in test})
    images, labels, words = load_spoken_words("test", per_word=2, cache_root=tmp_path, progress=False)
    assert images.dtype == np.uint8 and images.shape[1:] == (1, N_MELS, FRAMES) and words == list(WORDS)
    assert set(labels.tolist()) == set(range(len(WORDS)))
    again, labels2, _ = load_spoken_words("test", per_word=2, cache_root=tmp_path, progress=False)
    assert np.array_equal(again, images) and np.array_equal(labels2, labels)
    assert len(list(tmp_path.glob("*.npz"))) == 1


def test_griffin_lim_gives_back_audio_whose_spectrogram_matches():
    audio = synthesize("seven", "en-us+m3", 170, 50)
    spec = spectrogram(audio)
    back = to_audio(spec)
    again = spectrogram(back)
    assert again is not None and np.abs(back).max() <= 0.9 + 1e-6
    r = np.corrcoef(spec.astype(float).ravel(), again.astype(float).ravel())[0, 1]
    assert r > 0.8, r  # the same word, heard again from the reconstructed audio
    with wave.open(__import__("io").BytesIO(wav_bytes(back))) as w:
        assert w.getframerate() == 22_050 and w.getnframes() == len(back)


def test_a_missing_synthesizer_names_what_to_install(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(DataError, match="apt-get install espeak-ng"):
        synthesize("seven", "en-us", 170, 50)


def train_speech_model(tmp: Path) -> tuple[Path, Path]:
    """A tiny spoken-words diffusion model (6 steps on 3 clips a word); (its run folder, its GENFORGE_HOME)."""
    from genforge.config import RunConfig
    from genforge.train.fit import fit

    cfg = RunConfig.from_dict({
        "task": {"kind": "diffusion", "sample_steps": 2, "ema_decay": 0.9},
        "model": {"kind": "unet", "base_channels": 8, "channel_mult": [1, 2], "num_res_blocks": 1,
                  "attention_resolutions": [], "num_heads": 1, "groups": 4, "image_size": 48, "dropout": 0.0},
        "data": {"corpus": "spoken-words:3"},
        "train": {"out_dir": str(tmp / "spoken"), "max_steps": 6, "batch_size": 8, "eval_interval": 6,
                  "eval_steps": 1, "log_interval": 3, "warmup_steps": 2, "lr": 2e-3, "progress": False,
                  "precision": "fp32", "device": "cpu", "seed": 7},
    })
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENFORGE_HOME", str(tmp / "home"))
        return fit(cfg).out_dir, tmp / "home"


@pytest.fixture(scope="module")
def speech_model(tmp_path_factory):
    return train_speech_model(tmp_path_factory.mktemp("speech"))


def _cli(*args: str, cwd: Path, home: Path) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "genforge", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "GENFORGE_HOME": str(home)})


def test_the_speech_pipeline_knows_its_words(speech_model):
    import genforge

    sm = genforge.load(speech_model[0])
    assert sm.modality == "speech" and sm.classes == list(WORDS)
    assert sm.word_id("Seven!") == sm.word_id("7") == WORDS.index("seven")
    with pytest.raises(Exception, match="it knows zero, one"):
        sm.word_id("elephant")


def test_generate_writes_wav_files_and_refuses_what_does_not_apply(speech_model, tmp_path):
    run, home = speech_model
    r = _cli("generate", "--model", str(run), "--prompt", "seven", "--n", "2", "--steps", "3", "--seed", "1",
             "--out", "out", cwd=tmp_path, home=home)
    assert r.returncode == 0, r.stderr
    wavs = sorted((tmp_path / "out").glob("seven-*.wav"))
    assert len(wavs) == 2 and (tmp_path / "out" / "seven-spectrograms.png").is_file()
    with wave.open(str(wavs[0])) as w:
        assert w.getnframes() > 0.5 * 22_050
    for args, needle in ((("--prompt", "elephant"), "it knows zero"), (("--class", "3"), "--class does not apply"),
                         (("--prompt", "two", "--temperature", "0.5"), "--temperature does not apply")):
        r = _cli("generate", "--model", str(run), *args, "--out", "bad", cwd=tmp_path, home=home)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and needle in r.stderr, r.stderr
        assert not (tmp_path / "bad").exists()


def test_eval_reports_accuracy_and_distance_with_the_real_floor(speech_model, tmp_path):
    run, home = speech_model
    r = _cli("eval", "--model", str(run), "--n", "30", "--steps", "2", "--json", "s.json", cwd=tmp_path, home=home)
    assert r.returncode == 0, r.stderr
    rec = json.loads((tmp_path / "s.json").read_text())
    assert rec["generated"]["clips"] == 30 and 0 <= rec["generated"]["conditional_accuracy"] <= 1
    assert rec["floor"]["fd"] >= 0 and rec["generated"]["fd"] > 0 and rec["real_time_factor"] > 0
    assert "conditional accuracy" in r.stdout
