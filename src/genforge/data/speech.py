"""Spoken words: a corpus synthesized offline with espeak-ng, as log-mel spectrograms, and the way back to audio.

``espeak-ng`` (Debian) speaks each word in many voices: English accents (US, British, Scottish, received
pronunciation, Lancaster, West Midlands, Caribbean) times voice variants (male, female, Klatt, named
speakers), at several rates and pitches. Each clip is trimmed of silence and turned into a log-mel
spectrogram of ``N_MELS`` bins by ``FRAMES`` frames (librosa), stored as an 8-bit grey image: the
diffusion task and samplers of the image models train and sample on it unchanged. ``to_audio`` goes
back through Griffin-Lim (librosa's ``mel_to_audio``).

Two disjoint sets of voice variants: the generator trains on ``TRAIN_VARIANTS``; the word classifier that
judges it trains on ``HELD_OUT_VARIANTS`` (other voices than the generator heard). The corpus is made
once and cached (a few thousand clips take about a minute).
"""
from __future__ import annotations

import hashlib
import io
import json
import random
import shutil
import subprocess
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..atomic import atomic_write_bytes, atomic_write_text
from ..errors import DataError

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
WORDS = DIGITS + ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go",
                  "hello", "music", "water", "house", "tree", "bird", "green", "happy", "night", "river")
ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029")
TRAIN_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "f1", "f2", "f3", "f4", "klatt", "klatt2", "klatt3", "adam",
                  "david", "john", "linda", "max", "paul", "rob", "steph", "zac", "benjamin", "edward")
HELD_OUT_VARIANTS = ("m7", "m8", "f5", "klatt4", "klatt5", "Alicia", "Andy", "Annie", "Michael", "robert",
                     "travis", "victor")
RATES = (140, 160, 180, 200, 220)  # words a minute
PITCHES = (30, 40, 50, 60, 70)
SAMPLE_RATE = 22_050
N_FFT, HOP, N_MELS, FRAMES = 1024, 330, 48, 48  # 48 frames of 15 ms: 0.72 s
FMIN, FMAX = 60.0, 8_000.0
TOP_DB = 80.0  # the spectrogram keeps 80 dB below each clip's loudest bin
FORMAT = 1
INSTALL = "sudo apt-get install espeak-ng (the speech synthesizer) and pip install 'genforge[speech]' (librosa)"


def _librosa():
    try:
        import librosa
    except ImportError:
        raise DataError(f"speech needs librosa: {INSTALL}") from None
    return librosa


def synthesize(word: str, voice: str, rate: int, pitch: int) -> np.ndarray:
    """One clip from espeak-ng: float32 samples at ``SAMPLE_RATE``."""
    if shutil.which("espeak-ng") is None:
        raise DataError(f"no espeak-ng program: {INSTALL}")
    res = subprocess.run(["espeak-ng", "-v", voice, "-s", str(rate), "-p", str(pitch), "--stdout", word],
                         capture_output=True, timeout=60)
    if res.returncode != 0 or len(res.stdout) < 100:
        raise DataError(f"espeak-ng could not speak {word!r} with voice {voice}: "
                        f"{res.stderr.decode(errors='replace').strip()[:120]}")
    with wave.open(io.BytesIO(res.stdout)) as w:
        rate_hz, frames = w.getframerate(), w.readframes(w.getnframes())
    audio = np.frombuffer(frames, np.int16).astype(np.float32) / 32768.0
    if rate_hz != SAMPLE_RATE:
        audio = _librosa().resample(audio, orig_sr=rate_hz, target_sr=SAMPLE_RATE)
    return audio


def spectrogram(audio: np.ndarray) -> np.ndarray | None:
    """Trimmed audio -> a (N_MELS, FRAMES) uint8 log-mel image (low frequencies at the bottom row), centred in
    time; None when the word is longer than FRAMES frames."""
    librosa = _librosa()
    audio, _ = librosa.effects.trim(audio, top_db=40)
    mel = librosa.feature.melspectrogram(y=audio, sr=SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS,
                                         fmin=FMIN, fmax=FMAX, power=2.0)
    db = librosa.power_to_db(mel, ref=np.max, top_db=TOP_DB)  # 0 dB at the loudest bin, down to -TOP_DB
    if db.shape[1] > FRAMES:
        return None
    out = np.full((N_MELS, FRAMES), -TOP_DB, np.float32)
    start = (FRAMES - db.shape[1]) // 2
    out[:, start:start + db.shape[1]] = db
    return np.round((out + TOP_DB) / TOP_DB * 255).astype(np.uint8)[::-1].copy()


def to_audio(image: np.ndarray, n_iter: int = 48, seed: int = 0) -> np.ndarray:
    """A (N_MELS, FRAMES) spectrogram image (uint8, or floats in [-1, 1]) -> float32 audio by Griffin-Lim,
    peak-normalized to 0.9."""
    librosa = _librosa()
    img = np.asarray(image, np.float32)
    unit = img / 255.0 if image.dtype == np.uint8 else (np.clip(img, -1, 1) + 1) / 2
    db = unit[::-1] * TOP_DB - TOP_DB
    power = librosa.db_to_power(db)
    stft = librosa.feature.inverse.mel_to_stft(power, sr=SAMPLE_RATE, n_fft=N_FFT, power=2.0, fmin=FMIN, fmax=FMAX)
    audio = librosa.griffinlim(stft, n_iter=n_iter, hop_length=HOP, n_fft=N_FFT,
                               random_state=np.random.RandomState(seed))
    peak = float(np.abs(audio).max())
    return (audio * (0.9 / peak) if peak > 0 else audio).astype(np.float32)


def wav_bytes(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes((np.clip(audio, -1, 1) * 32767).astype(np.int16).tobytes())
    return buf.getvalue()


def clip_plan(split: str, per_word: int, seed: int = 0) -> list[tuple[str, str, int, int]]:
    """(word, voice, rate, pitch) of each clip of a split: ``per_word`` random voices per word."""
    variants = TRAIN_VARIANTS if split == "train" else HELD_OUT_VARIANTS
    rng = random.Random(f"{split}-{seed}")
    plan = []
    for word in WORDS:
        for _ in range(per_word):
            plan.append((word, f"{rng.choice(ACCENTS)}+{rng.choice(variants)}", rng.choice(RATES),
                         rng.choice(PITCHES)))
    return plan


def load_spoken_words(split: str = "train", per_word: int | None = None, cache_root: Path | None = None,
                      progress: bool = True) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(images (N, 1, N_MELS, FRAMES) uint8, labels (N,) int64, WORDS): the synthesized corpus of a split
    (``train``: 120 clips a word; ``test``: 40 a word, other voices), made once and cached."""
    from ..paths import data_home

    if split not in ("train", "test"):
        raise DataError(f"spoken-words split {split!r} is unknown: allowed train, test")
    per_word = per_word or (120 if split == "train" else 40)
    plan = clip_plan(split, per_word)
    key = hashlib.sha256(json.dumps({"format": FORMAT, "plan": plan, "mel": [SAMPLE_RATE, N_FFT, HOP, N_MELS,
                                     FRAMES, FMIN, FMAX, TOP_DB]}).encode()).hexdigest()[:16]
    root = cache_root or data_home() / "speech"
    path = root / f"spoken-words-{split}-{key}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            return z["images"], z["labels"], list(WORDS)
    from tqdm.auto import tqdm

    def one(item):
        word, voice, rate, pitch = item
        return spectrogram(synthesize(word, voice, rate, pitch))

    with ThreadPoolExecutor(max_workers=4) as pool:
        specs = list(tqdm(pool.map(one, plan), total=len(plan), desc=f"speaking {split} words", unit="clip",
                          disable=not progress, dynamic_ncols=True))
    keep = [i for i, s in enumerate(specs) if s is not None]
    images = np.stack([specs[i] for i in keep])[:, None]
    labels = np.asarray([WORDS.index(plan[i][0]) for i in keep], np.int64)
    buf = io.BytesIO()
    np.savez(buf, images=images, labels=labels)
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())
    atomic_write_text(path.with_suffix(".json"), json.dumps({"clips": len(plan), "kept": len(keep),
                                                             "too_long": len(plan) - len(keep)}))
    return images, labels, list(WORDS)
