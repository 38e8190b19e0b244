"""``genforge generate`` and ``genforge eval`` for speech models (WAV files; a word classifier's verdict)."""
from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

from .errors import GenforgeError

DEFAULT_N = 4  # renditions of the prompt's word when --n is left out
DEFAULT_OUT = "samples"
EVAL_N = 600  # generated clips `genforge eval` judges (20 a word for 30 words)
TEXT_ONLY = ("min_p", "repetition_penalty", "frequency_penalty", "presence_penalty", "num_beams", "best_of",
             "top_k", "top_p", "temperature", "max_tokens")


def _settings(args: argparse.Namespace) -> tuple[int, str, float]:
    from .pipelines.image import DEFAULTS

    return (DEFAULTS["steps"] if args.steps is None else args.steps, args.sampler or DEFAULTS["sampler"],
            DEFAULTS["guidance"] if args.guidance is None else args.guidance)


def generate_speech(sm, args: argparse.Namespace, params: dict) -> int:
    """WAV files of a word (``--prompt``; without one, each word the model knows once) and their spectrograms."""
    wrong = [k for k in TEXT_ONLY if k in params] + (["stop"] if params.get("stop") else [])
    wrong += [f for f in ("class_", "truncation", "grid", "retrieve") if getattr(args, f, None) is not None]
    if wrong:
        flag = "--class" if wrong[0] == "class_" else "--" + wrong[0].replace("_", "-")
        raise GenforgeError(f"{flag} does not apply to speech models (their flags: --prompt WORD, --n, --steps, "
                            "--sampler, --guidance, --seed, --out)")
    steps, sampler, guidance = _settings(args)
    words = [args.prompt] if args.prompt is not None else list(sm.classes)
    for w in words:
        sm.word_id(w)  # an unknown word: the list of known ones, before any sampling
    n = (DEFAULT_N if args.prompt is not None else 1) if args.n is None else args.n
    sm.check(n=n, steps=steps, sampler=sampler, guidance=guidance, seed=0)
    out = Path(args.out or DEFAULT_OUT)
    if out.exists() and not out.is_dir():
        raise GenforgeError(f"--out {out} is a file: speech models write a folder of .wav files")
    seed = params.get("seed", random.randrange(2**31))
    t0 = time.perf_counter()
    total = 0.0
    for k, w in enumerate(words):
        images, audio = sm.speak(w, n=n, seed=seed + k, steps=steps, sampler=sampler, guidance=guidance)
        word = sm.classes[sm.word_id(w)]
        paths = sm.save_audio(images, audio, out, word, {"word": word, "seed": seed + k, "steps": steps,
                                                         "sampler": sampler, "guidance": guidance})
        total += sum(len(a) for a in audio)
        print(f"wrote {', '.join(str(p) for p in paths[:-1])} and {paths[-1].name} ({word!r})")
    from .data.speech import SAMPLE_RATE

    took = time.perf_counter() - t0
    print(f"{len(words) * n} clip(s), {total / SAMPLE_RATE:.1f} s of audio in {took:.1f} s (real-time factor "
          f"{total / SAMPLE_RATE / took:.2f}; seed {seed})")
    return 0


def eval_speech(sm, args: argparse.Namespace) -> int:
    """A word classifier trained on other voices than the generator's judges ``--n`` generated clips (after
    Griffin-Lim, re-analysed from the audio): conditional accuracy, and the Frechet distance in its feature
    space to the real training clips, beside the same figures for real clips (the floor)."""
    import json

    from .atomic import atomic_write_text
    from .eval.speech_metrics import evaluate_speech

    n = EVAL_N if args.n is None else args.n
    if not 30 <= n <= 10_000:
        raise GenforgeError(f"--n {n} is out of range: allowed 30 .. 10000 clips")
    steps, sampler, guidance = _settings(args)
    record = evaluate_speech(sm, n, steps, sampler, guidance, args.seed)
    ours, floor = record["generated"], record["floor"]
    print(f"word classifier: {record['classifier']['test_accuracy']:.3f} accuracy on the generator's training voices "
          f"(trained on {record['classifier']['train_clips']:,} clips of {record['classifier']['voices']} other "
          "voices)")
    print(f"{n} generated clips ({sampler}, {steps} steps, guidance {guidance:g}), through Griffin-Lim and back:")
    print(f"  conditional accuracy {ours['conditional_accuracy']:.3f}   real clips {floor['conditional_accuracy']:.3f}")
    print(f"  Frechet distance     {ours['fd']:.3f}   real against real {floor['fd']:.3f}")
    print(f"  real-time factor of generation {record['real_time_factor']:.2f} (seconds of audio per second)")
    if args.json:
        record.update({"model": args.model, "seed": args.seed, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                     time.gmtime())})
        print(f"wrote {atomic_write_text(args.json, json.dumps(record, indent=2) + chr(10))}")
    return 0
