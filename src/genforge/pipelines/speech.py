"""The speech pipeline: a word -> its class -> a log-mel spectrogram from a class-conditional diffusion model
-> audio by Griffin-Lim -> WAV.

A speech model is an image diffusion model (``train/tasks/diffusion.py``, the UNet and the samplers and
classifier-free guidance of ``sampling.diffusion``, unchanged) trained on the spectrograms of
``data.speech``; this pipeline only names its conditions (the words) and turns its images into sound.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GenforgeError
from .image import DEFAULTS, ImageModel

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


class SpeechModel(ImageModel):
    """A loaded spoken-word generator: ``speak`` a word it knows as audio, ``save`` WAV files."""

    modality = "speech"

    def word_id(self, prompt: str) -> int:
        """The class of a one-word prompt ("seven", "Seven!", "7"); the list of known words otherwise."""
        words = re.findall(r"[a-z0-9]+", str(prompt).lower())
        if len(words) == 1 and words[0].isdigit() and len(words[0]) == 1:
            words = [DIGIT_WORDS[int(words[0])]]
        names = [c.lower() for c in self.classes]
        if len(words) != 1 or words[0] not in names:
            raise GenforgeError(f"{str(prompt)[:60]!r} is not a word this model speaks: it knows "
                                f"{', '.join(self.classes)}")
        return names.index(words[0])

    def speak(self, prompt: str, n: int = 1, seed: int = 0, steps: int = DEFAULTS["steps"],
              sampler: str = DEFAULTS["sampler"], guidance: float = DEFAULTS["guidance"],
              callback=None) -> tuple[np.ndarray, list[np.ndarray]]:
        """``n`` renditions of a word: the spectrogram images (n, 1, H, W) uint8 and their audio."""
        from ..data.speech import to_audio

        images = self.generate(n=n, cls=self.word_id(prompt), steps=steps, sampler=sampler, guidance=guidance,
                               seed=seed, callback=callback).numpy()
        return images, [to_audio(img[0], seed=seed + i) for i, img in enumerate(images)]

    def save_audio(self, images: np.ndarray, audio: list[np.ndarray], out_dir: str | Path, stem: str,
                   settings: dict[str, Any]) -> list[Path]:
        """``stem-000.wav`` ... and ``stem-spectrograms.png`` (the images, low frequencies at the bottom)."""
        import torch

        from ..atomic import atomic_write_bytes
        from ..codecs.image import image_grid, save_png
        from ..data.speech import wav_bytes

        out = Path(out_dir)
        paths = [atomic_write_bytes(out / f"{stem}-{i:03d}.wav", wav_bytes(a)) for i, a in enumerate(audio)]
        paths.append(save_png(image_grid(torch.from_numpy(images)), out / f"{stem}-spectrograms.png",
                              {"model": self.name, **settings}, scale=3))
        return paths
