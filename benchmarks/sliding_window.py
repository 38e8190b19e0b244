"""Decode speed past the context: 1,000 tokens (sliding window) against 200 tokens (no slide).

The bundled shakespeare-char model has a 256-token context, so 1,000 new tokens after a 9-token prompt
slide the window: when the cache is full the most recent ``keep`` tokens are re-prefilled and decoding
continues (``genforge.sampling.tokens``). This measures what that costs, end to end including the
prefill, at temperature 0.8 with a fixed seed:

* tokens/s for 200 tokens (fits the context) and for 1,000 tokens with ``keep`` = 1/2, 3/4 and 7/8
  of the context, alternating the variants round by round (the order rotates); medians, and each
  1,000-token rate over the 200-token rate of the same round (``common.paired_ratio``, with spread);
* nanoGPT's way of sampling past the context, in this process on the same weights: crop the input
  to the last 256 tokens and run the whole window through the model for every token (the first
  ``--peer-rounds`` rounds only, default 1: it is slow; its ratio pairs with those rounds' 200-token runs);
* the mean history the model sees per token under each ``keep`` (keep + (context - keep) / 2 once
  sliding; nanoGPT always sees the full context).

    python benchmarks/sliding_window.py              # a few minutes on 2 idle cores
    python benchmarks/sliding_window.py --smoke      # seconds, results/smoke/
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, median, paired_ratio, write_result  # noqa: E402

PROMPT = "MACBETH.\n"
SHORT, LONG = 200, 1000
KEEPS = {"1/2": 0.5, "3/4": 0.75, "7/8": 0.875}


def _decode(tm, n: int, keep: float | None = None) -> float:
    """Seconds to sample ``n`` tokens (prefill included) with the window keeping ``keep`` of the context."""
    from genforge.sampling import tokens

    saved = tokens.SLIDE_KEEP
    tokens.SLIDE_KEEP = saved if keep is None else keep
    try:
        t0 = time.perf_counter()
        out = tm.complete(PROMPT, max_tokens=n, temperature=0.8, seed=0)
        seconds = time.perf_counter() - t0
    finally:
        tokens.SLIDE_KEEP = saved
    assert len(out.token_ids) == n, (len(out.token_ids), n)
    return seconds


def _nanogpt_crop(tm, n: int) -> float:
    """nanoGPT's ``generate``: crop to the last block_size tokens, full forward pass per token."""
    import torch

    model, ctx = tm.model, tm.context_length
    g = torch.Generator().manual_seed(0)
    idx = torch.tensor([tm.codec.encode(PROMPT)])
    t0 = time.perf_counter()
    with torch.inference_mode():
        for _ in range(n):
            logits = model(idx[:, -ctx:])[:, -1, :] / 0.8
            nxt = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=g)
            idx = torch.cat((idx, nxt), dim=1)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--peer-rounds", type=int, default=1, help="rounds that also run nanoGPT's crop (slow; 0: none)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--smoke", action="store_true", help="a few seconds: fewer tokens and rounds, results/smoke/")
    ap.add_argument("--out-dir", help="results folder (default benchmarks/results, or results/smoke with --smoke)")
    args = ap.parse_args()

    import torch

    import genforge

    torch.set_num_threads(args.threads)
    short, long, rounds = (20, 280, 2) if args.smoke else (SHORT, LONG, args.rounds)
    peer_rounds = 1 if args.smoke else args.peer_rounds
    peer = f"{long} nanoGPT crop"
    tm = genforge.load("shakespeare-char")
    ctx = tm.context_length
    variants: dict[str, Any] = {f"{short}": lambda: _decode(tm, short)}
    variants.update({f"{long} keep {name}": (lambda k=k: _decode(tm, long, k)) for name, k in KEEPS.items()})
    variants[peer] = lambda: _nanogpt_crop(tm, long)
    for name, fn in variants.items():  # warm-up
        if name != peer:
            fn()
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    names, loads = list(variants), []
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            if name != peer or r < min(peer_rounds, rounds):
                seconds[name].append(variants[name]())
        loads.append(os.getloadavg()[0])
        print(f"round {r + 1}/{rounds}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in seconds.items() if v), flush=True)
    rates = {name: [(short if name == f"{short}" else long) / s for s in runs] for name, runs in seconds.items()}
    base = rates[f"{short}"]
    out: dict[str, Any] = {
        "model": "shakespeare-char", "context": ctx, "prompt": PROMPT, "prompt_tokens": len(tm.codec.encode(PROMPT)),
        "rounds": rounds, "threads": args.threads,
        "tokens_per_s": {name: {"median": median(r), "runs": r} for name, r in rates.items() if r},
        f"ratio_to_{short}_tokens": {name: paired_ratio(r, base[:len(r)]) for name, r in rates.items()
                                     if name != f"{short}" and r},
        "mean_history_seen": {name: k * ctx + (ctx - k * ctx) / 2 for name, k in KEEPS.items()},
        "seconds": {name: runs for name, runs in seconds.items() if runs},
        "loadavg_1min_per_round": loads,
    }
    for name, ratio in out[f"ratio_to_{short}_tokens"].items():
        print(f"{name}: {median(rates[name]):.1f} tok/s, {ratio['median']:.3f}x of {short} tokens "
              f"({ratio['min']:.3f}..{ratio['max']:.3f})")
    print(f"{short}: {median(base):.1f} tok/s")
    results = Path(args.out_dir) if args.out_dir else (RESULTS / "smoke" if args.smoke else RESULTS)
    print(f"wrote {write_result('sliding_window', out, results)}")


if __name__ == "__main__":
    main()
