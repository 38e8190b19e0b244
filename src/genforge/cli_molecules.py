"""``genforge generate`` and ``genforge eval`` for molecule models (SMILES files, drawings, MOSES metrics)."""
from __future__ import annotations

import argparse
import random

from .errors import GenforgeError

DEFAULT_N = 100  # molecules `genforge generate` writes when --n is left out
DEFAULT_OUT = "samples/molecules.smi"
EVAL_N = 30_000  # the MOSES protocol: metrics over 30,000 samples
TEXT_ONLY = ("min_p", "repetition_penalty", "frequency_penalty", "presence_penalty", "num_beams", "best_of")


def _sample(mm, n: int, prompt: str, params: dict, seed: int) -> list[str]:
    from tqdm.auto import tqdm

    with tqdm(total=n, unit="mol", desc="sampling", dynamic_ncols=True) as bar:
        return mm.sample(n, prompt=prompt, seed=seed, temperature=params.get("temperature", 1.0),
                         top_k=params.get("top_k", 0), top_p=params.get("top_p", 1.0),
                         max_tokens=params.get("max_tokens"), callback=lambda done, total: bar.update(done - bar.n),
                         watermark=params.get("watermark"))


def generate_molecules(mm, args: argparse.Namespace, params: dict) -> int:
    """SMILES to ``--out`` (.smi, .csv with scores, .sdf), optionally a drawn ``--grid`` PNG; a summary line."""
    from .chem import properties

    wrong = [k for k in TEXT_ONLY if k in params] + (["stop"] if params.get("stop") else [])
    wrong += [f for f in ("class_", "steps", "sampler", "guidance", "truncation") if getattr(args, f) is not None]
    if wrong:
        flag = "--class" if wrong[0] == "class_" else "--" + wrong[0].replace("_", "-")
        raise GenforgeError(f"{flag} does not apply to molecule models (their flags: --n, --prompt, --temperature, "
                            "--top-k, --top-p, --max-tokens, --seed, --out, --grid)")
    from .pipelines.molecule import MAX_N

    n = DEFAULT_N if args.n is None else args.n
    if not 1 <= n <= MAX_N:
        raise GenforgeError(f"--n {n} is invalid: allowed an integer from 1 to {MAX_N:,}")
    seed = params.get("seed", random.randrange(2**31))
    prompt = args.prompt or ""
    mm.check_prompt(prompt)  # a bad fragment before any sampling
    out = args.out or DEFAULT_OUT
    mm.check_output(out, args.grid)
    smiles = _sample(mm, n, prompt, params, seed)
    paths = mm.save(smiles, out, grid=args.grid,
                    settings={"model": args.model, "seed": seed, "prompt": prompt,
                              "temperature": params.get("temperature", 1.0)})
    props = properties(smiles)
    valid = [s for s, p in zip(smiles, props) if p is not None]
    print(f"wrote {paths[0]}: {n:,} SMILES, {len(valid) / n:.1%} valid, {len(set(valid)):,} unique valid (seed {seed})"
          + (f"; drawing: {paths[1]}" if len(paths) > 1 else ""))
    return 0


def eval_molecules(mm, args: argparse.Namespace) -> int:
    """The MOSES metrics of ``--n`` samples (default 30,000) beside the published CharRNN row."""
    import json
    import time

    from .atomic import atomic_write_text
    from .eval.moses_metrics import evaluate_molecules, format_row, plot_properties

    n = EVAL_N if args.n is None else args.n
    if not 100 <= n <= 100_000:
        raise GenforgeError(f"--n {n} is out of range: allowed 100 .. 100000 samples")
    t0 = time.perf_counter()
    smiles = _sample(mm, n, "", {}, args.seed)
    sample_s = time.perf_counter() - t0
    print(f"measuring {n:,} samples against the MOSES test sets (FCD takes a few minutes on a CPU)...", flush=True)
    ours = evaluate_molecules(smiles, progress=True)
    print(format_row(ours))
    if args.plot:
        print(f"wrote {plot_properties(smiles, args.plot)}")
    if args.json:
        record = {"model": args.model, "samples": n, "seed": args.seed, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                  time.gmtime()), "sampling_s": round(sample_s, 1), "metrics": ours}
        print(f"wrote {atomic_write_text(args.json, json.dumps(record, indent=2) + chr(10))}")
    return 0
