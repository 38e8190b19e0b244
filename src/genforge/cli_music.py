"""``genforge generate`` and ``genforge eval`` for music models (MIDI, WAV and piano-roll files; music statistics)."""
from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

from .errors import GenforgeError

DEFAULT_N = 1  # pieces `genforge generate` writes when --n is left out
DEFAULT_SECONDS = 30.0
DEFAULT_OUT = "samples"
EVAL_N = 200
TEXT_ONLY = ("min_p", "repetition_penalty", "frequency_penalty", "presence_penalty", "num_beams", "best_of")
OTHER_FLAGS = ("class_", "steps", "sampler", "guidance", "truncation", "grid", "retrieve")


def _refuse(args: argparse.Namespace, params: dict) -> None:
    wrong = [k for k in TEXT_ONLY if k in params] + (["stop"] if params.get("stop") else [])
    wrong += [f for f in OTHER_FLAGS if getattr(args, f, None) is not None]
    if args.prompt is not None:
        wrong.append("prompt")
    if wrong:
        flag = "--class" if wrong[0] == "class_" else "--" + wrong[0].replace("_", "-")
        raise GenforgeError(f"{flag} does not apply to music models (their flags: --style, --key, --meter, "
                            "--prompt-file, --seconds, --n, --temperature, --top-k, --top-p, --seed, --out)")


def _compose(mm, n: int, params: dict, seed: int, **kw):
    from tqdm.auto import tqdm

    with tqdm(total=n, unit="piece", desc="composing", dynamic_ncols=True) as bar:
        return mm.compose(n, seed=seed, temperature=params.get("temperature", 1.0), top_k=params.get("top_k", 0),
                          top_p=params.get("top_p", 1.0), callback=lambda done, total: bar.update(done - bar.n),
                          watermark=params.get("watermark"), **kw)


def generate_music(mm, args: argparse.Namespace, params: dict) -> int:
    """Pieces to ``--out`` (a folder): each as .mid, .wav (when a synthesizer is installed) and .png."""
    from .music import duration_s, read_prompt, save_piece
    from .pipelines.music import MAX_N, MAX_SECONDS

    _refuse(args, params)
    n = DEFAULT_N if args.n is None else args.n
    if not 1 <= n <= MAX_N:
        raise GenforgeError(f"--n {n} is invalid: allowed an integer from 1 to {MAX_N}")
    seconds = DEFAULT_SECONDS if args.seconds is None else args.seconds
    if not 1.0 <= seconds <= MAX_SECONDS:
        raise GenforgeError(f"--seconds {seconds:g} is out of range: allowed 1 .. {MAX_SECONDS:g}")
    melody = read_prompt(args.prompt_file) if args.prompt_file else None
    kw = {"style": args.style, "key": args.key, "meter": args.meter, "melody": melody, "seconds": seconds}
    mm.prompt_text(args.style, args.key, args.meter, melody)  # a bad condition or melody before any sampling
    out = Path(args.out or DEFAULT_OUT)
    if out.exists() and not out.is_dir():
        raise GenforgeError(f"--out {out} is a file: music models write a folder of .mid/.wav/.png files")
    seed = params.get("seed", random.randrange(2**31))
    t0 = time.perf_counter()
    pieces = _compose(mm, n, params, seed, **kw)
    problem = None
    for i, d in enumerate(pieces):
        files, problem = save_piece(d.piece, out / f"piece-{seed}-{i:03d}")
        note = f", {d.malformed} malformed token(s) skipped" if d.malformed else ""
        print(f"wrote {', '.join(str(f) for f in files)}: {duration_s(d.piece):.1f} s, {len(d.piece.notes)} notes, "
              f"{d.piece.style}, {d.piece.key}, {d.piece.meter}{note}")
    if problem:
        print(f"no WAV files: {problem}")
    print(f"{n} piece(s) in {time.perf_counter() - t0:.1f} s (seed {seed})")
    return 0


def held_out(mm, corpus: str | None) -> list:
    """The held-out pieces of the corpus the model was trained on (or of ``corpus``)."""
    from .data.music import load_music, split

    spec = corpus or (mm.meta.get("config", {}).get("data", {}).get("corpus"))
    if not spec:
        raise GenforgeError("this model does not say what it was trained on: give --corpus")
    return split(load_music(spec))[1]


def eval_music(mm, args: argparse.Namespace) -> int:
    """Held-out NLL per token and per note; statistics of ``--n`` pieces (default 200) beside the held-out set
    and the floor between its halves."""
    import json
    import math

    from .atomic import atomic_write_text
    from .codecs.music import piece_to_text
    from .eval.music_metrics import compare, format_report, halves, statistics

    n = EVAL_N if args.n is None else args.n
    if not 2 <= n <= 2000:
        raise GenforgeError(f"--n {n} is out of range: allowed 2 .. 2000 pieces")
    held = held_out(mm, args.corpus)
    text = "".join(piece_to_text(p) + "\n" for p in held)
    tokens = len(mm.codec.encode(text))
    nll = math.log(mm.perplexity(text))
    notes = sum(len(p.notes) for p in held)
    print(f"held-out: {len(held)} pieces, {notes:,} notes, {tokens:,} tokens; NLL {nll:.4f} nats/token, "
          f"{nll * tokens / notes:.4f} nats/note")
    t0 = time.perf_counter()
    heads = [held[i % len(held)] for i in range(n)]  # each piece asks for a held-out piece's style, key, meter
    gen = []
    from tqdm.auto import tqdm

    with tqdm(total=n, unit="piece", desc="composing", dynamic_ncols=True) as bar:
        for style, key, meter in sorted({(p.style, p.key, p.meter) for p in heads}):
            k = sum(1 for p in heads if (p.style, p.key, p.meter) == (style, key, meter))
            known = all(c in mm.known(kind) for kind, c in (("style", style), ("key", key), ("meter", meter)))
            gen += [d.piece for d in mm.compose(k, style=style, key=key if known else None,
                                                 meter=meter if known else None, seed=args.seed + len(gen),
                                                 seconds=DEFAULT_SECONDS)]
            bar.update(k)
    sample_s = time.perf_counter() - t0
    a, b = halves(held)
    record = {"generated": statistics(gen), "held_out": statistics(held), "vs_held_out": compare(gen, held),
              "floor": compare(a, b), "nll_per_token": nll, "nll_per_note": nll * tokens / notes,
              "held_out_pieces": len(held), "samples": n, "sampling_s": round(sample_s, 1)}
    print(format_report(record["generated"], record["held_out"], record["vs_held_out"], record["floor"]))
    if args.json:
        record.update({"model": args.model, "seed": args.seed,
                       "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        print(f"wrote {atomic_write_text(args.json, json.dumps(record, indent=2) + chr(10))}")
    return 0
