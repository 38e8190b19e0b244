"""Judging spoken words: a word classifier trained on other voices than the generator heard.

The classifier is the small CNN of FD-FMNIST (``eval.image_features``) trained on the log-mel spectrograms of
the held-out voice variants (``data.speech.HELD_OUT_VARIANTS``); its accuracy on the generator's own
training voices says how well it hears across voices. Generated clips are judged as sound: each
spectrogram goes through Griffin-Lim to audio and is analysed again from that audio, so what is scored is
what a listener gets. The floor puts real clips of the training voices through the same round trip:
their accuracy, and the Frechet distance between two disjoint sets of them in the classifier's 128-d
feature space (Heusel et al. 2017's distance, in a feature space made for the data).
"""
from __future__ import annotations

import time

import numpy as np
import torch

from ..data.images import ImageSet
from ..errors import GenforgeError

CLASSIFIER_EPOCHS = 12


def word_classifier(corpus: str = "spoken-words"):
    """The word classifier of a spoken-words corpus (trained once, cached in GENFORGE_HOME's data/speech) and
    its metrics."""
    import json

    from ..data.speech import HELD_OUT_VARIANTS
    from ..paths import data_home
    from .image_features import load_feature_net, save_feature_net, train_feature_net

    folder = data_home() / "speech" / f"word-classifier-{corpus.replace(':', '-')}"
    held, train = _image_set(corpus, "test"), _image_set(corpus, "train")
    if (folder / "genforge.json").is_file():
        return load_feature_net(folder), json.loads((folder / "metrics.json").read_text())
    net, metrics = train_feature_net(held, train, epochs=CLASSIFIER_EPOCHS, batch_size=64, seed=0)
    metrics = {**metrics, "train_clips": len(held), "voices": len(HELD_OUT_VARIANTS)}
    save_feature_net(net, folder, metrics)
    from ..atomic import atomic_write_text

    atomic_write_text(folder / "metrics.json", json.dumps(metrics))
    return net, metrics


def _image_set(corpus: str, split: str) -> ImageSet:
    from ..data.images import load_images
    from ..data.speech import N_MELS

    return load_images(corpus, split, size=N_MELS)


def round_trip(images: np.ndarray, seed: int = 0) -> tuple[np.ndarray, list[np.ndarray]]:
    """Spectrogram images -> Griffin-Lim audio -> spectrograms analysed from that audio (and the audio)."""
    from ..data.speech import FRAMES, N_MELS, spectrogram, to_audio

    audio = [to_audio(img[0], seed=seed + i) for i, img in enumerate(images)]
    out = [spectrogram(a) for a in audio]
    blank = np.zeros((N_MELS, FRAMES), np.uint8)
    return np.stack([s if s is not None else blank for s in out])[:, None], audio


def _judge(net, images: np.ndarray, labels: np.ndarray, reference: np.ndarray) -> dict:
    from .image_features import embed_images
    from .image_metrics import conditional_accuracy, feature_stats, frechet_distance

    feats, logits = embed_images(net, torch.from_numpy(images))
    fd = frechet_distance(*feature_stats(feats.numpy()), *feature_stats(reference))
    return {"conditional_accuracy": conditional_accuracy(logits, torch.from_numpy(labels)), "fd": float(fd),
            "clips": int(len(images))}


def evaluate_speech(sm, n: int, steps: int, sampler: str, guidance: float, seed: int = 0) -> dict:
    """Conditional accuracy and FD of ``n`` generated clips (class-balanced over the model's words), the same
    for ``n`` real training-voice clips (the floor); both against the other real training-voice clips."""
    from tqdm.auto import tqdm

    from ..data.speech import SAMPLE_RATE
    from .image_features import embed_images

    corpus = (sm.meta.get("config") or {}).get("data", {}).get("corpus") or "spoken-words"
    net, metrics = word_classifier(corpus)
    real = _image_set(corpus, "train")
    if list(real.classes) != list(sm.classes):
        raise GenforgeError(f"{sm.name} speaks {len(sm.classes)} words that are not the spoken-words corpus's")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(real))
    floor_idx, ref_idx = order[:min(n, len(real) // 2)], order[min(n, len(real) // 2):]
    reference = embed_images(net, real.images[torch.from_numpy(ref_idx)])[0].numpy()
    labels = np.arange(n) % len(sm.classes)
    gen, audio_s, t0 = [], 0.0, time.perf_counter()
    with tqdm(total=n, unit="clip", desc="speaking", dynamic_ncols=True) as bar:
        for c in range(len(sm.classes)):
            k = int((labels == c).sum())
            if not k:
                continue
            images, audio = sm.speak(sm.classes[c], n=k, seed=seed + 1000 * c, steps=steps, sampler=sampler,
                                     guidance=guidance)
            gen.append(images)
            audio_s += sum(len(a) for a in audio) / SAMPLE_RATE
            bar.update(k)
    took = time.perf_counter() - t0
    gen_images = np.concatenate(gen)
    gen_labels = np.concatenate([np.full(int((labels == c).sum()), c) for c in range(len(sm.classes))])
    heard, _ = round_trip(gen_images, seed)
    floor_heard, _ = round_trip(real.images[torch.from_numpy(floor_idx)].numpy(), seed)
    return {"classifier": {k: metrics[k] for k in ("test_accuracy", "train_clips", "voices", "epochs")},
            "generated": _judge(net, heard, gen_labels, reference),
            "generated_spectrograms": _judge(net, gen_images, gen_labels, reference),
            "floor": _judge(net, floor_heard, real.labels[torch.from_numpy(floor_idx)].numpy(), reference),
            "reference_clips": int(len(ref_idx)), "generation_s": round(took, 2), "audio_s": round(audio_s, 2),
            "real_time_factor": audio_s / took, "settings": {"steps": steps, "sampler": sampler,
                                                              "guidance": guidance, "n": n}}
