"""Run the real nanoGPT's CPU recipe beside ``nanogpt_ref.py`` and compare their val-loss curves.

``nanogpt_ref.py`` re-implements nanoGPT's Tiny Shakespeare CPU run so that ``train_quality.py`` can
run it per seed. This script confirms the re-implementation against nanoGPT itself, which it does
not contain: point it at a nanoGPT checkout of your own (https://github.com/karpathy/nanoGPT) in
which ``data/shakespeare_char/prepare.py`` has been run (put Tiny Shakespeare at
``data/shakespeare_char/input.txt`` first and prepare.py uses it instead of downloading it).

It runs, one after the other with the same torch threads:

1. nanoGPT's ``train.py`` with the CPU recipe from nanoGPT's README ("I only have a macbook"),
   ``RECIPE`` below, in a subprocess in that folder; nanoGPT's seed is fixed at 1337 in train.py.
   Its logged ``step N: train loss X, val loss Y`` lines (every ``eval_interval`` = 250 iterations
   of config/train_shakespeare_char.py) are parsed;
2. ``nanogpt_ref.train_reference`` at seed 1337 on the same input.txt, in this process.

and writes both curves, their differences, the wall times and nanoGPT's git commit to
``benchmarks/results/nanogpt_check.json``.

    python benchmarks/nanogpt_check.py --nanogpt-dir ~/src/nanoGPT [--threads 2]
"""
from __future__ import annotations

import argparse
import hashlib
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, write_result  # noqa: E402
from nanogpt_ref import EVAL_INTERVAL, ITERS, NANOGPT_README, RECIPE, train_reference  # noqa: E402

_STEP = re.compile(r"^step (\d+): train loss ([0-9.]+), val loss ([0-9.]+)", re.M)
_ITER = re.compile(r"^iter (\d+): loss ([0-9.]+), time ([0-9.]+)ms", re.M)


def _git(folder: Path, *args: str) -> str | None:
    try:
        return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, check=True,
                              timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def run_nanogpt(folder: Path, threads: int, iters: int) -> dict:
    """nanoGPT's train.py with the README's CPU recipe (``iters`` other than 2000: smoke runs only)."""
    args = [a.replace("2000", str(iters)) if a.startswith(("--max_iters=", "--lr_decay_iters=")) else a
            for a in RECIPE]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "train.py", *args], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=3600)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"nanoGPT's train.py failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n"
                         f"{proc.stderr[-3000:]}")
    curve = {int(s): float(v) for s, _, v in _STEP.findall(proc.stdout)}
    train_curve = {int(s): float(t) for s, t, _ in _STEP.findall(proc.stdout)}
    ms = [float(m) for i, _, m in _ITER.findall(proc.stdout) if int(i) > 0]  # iteration 0 includes set-up
    if iters not in curve:
        raise SystemExit(f"no 'step {iters}: ... val loss' line in nanoGPT's output:\n{proc.stdout[-2000:]}")
    return {"command": ["python", "train.py", *args], "val_curve": curve, "train_curve": train_curve,
            "wall_s": wall, "median_ms_per_iter": statistics.median(ms) if ms else None,
            "step_lines": [m.group(0) for m in _STEP.finditer(proc.stdout)], "stderr_tail": proc.stderr[-1500:]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nanogpt-dir", required=True, type=Path,
                    help="a nanoGPT checkout with data/shakespeare_char prepared (train.bin, val.bin, input.txt)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=ITERS, help=argparse.SUPPRESS)  # smoke runs only
    ap.add_argument("--out-dir", help="results folder (default benchmarks/results)")
    args = ap.parse_args()
    folder = args.nanogpt_dir.expanduser().resolve()
    data = folder / "data" / "shakespeare_char"
    missing = [p for p in (folder / "train.py", data / "input.txt", data / "train.bin", data / "val.bin",
                           data / "meta.pkl") if not p.is_file()]
    if missing:
        sys.exit(f"not a prepared nanoGPT checkout, missing: {', '.join(str(p.relative_to(folder)) for p in missing)}"
                 " (put Tiny Shakespeare at data/shakespeare_char/input.txt and run prepare.py there)")
    import torch

    torch.set_num_threads(args.threads)
    raw = (data / "input.txt").read_bytes()
    commit = _git(folder, "rev-parse", "HEAD")
    edits = _git(folder, "status", "--porcelain", "--untracked-files=no")  # tracked files changed, if any

    print(f"nanoGPT {commit or '(not a git checkout)'}: {' '.join(RECIPE)}", flush=True)
    load = [os.getloadavg()[0]]  # > threads: other work shared the cores, and the wall times say little
    real = run_nanogpt(folder, args.threads, args.iters)
    load.append(os.getloadavg()[0])
    print(f"nanoGPT   val {real['val_curve']}  {real['wall_s']:.0f} s", flush=True)
    ref = train_reference(raw.decode("utf-8"), 1337, args.threads, args.iters)
    load.append(os.getloadavg()[0])
    ref_curve = {int(k): v for k, v in ref["val_curve"].items()}
    print(f"reference val {ref_curve}  {ref['wall_s']:.0f} s", flush=True)

    steps = sorted(set(real["val_curve"]) & set(ref_curve))
    diff = {s: ref_curve[s] - real["val_curve"][s] for s in steps}
    worst = max(abs(d) for d in diff.values())
    # nanoGPT logs 4 decimals: equal to the log's precision means |diff| <= 5e-5 (plus float noise)
    out = {
        "nanogpt": {"repo": "https://github.com/karpathy/nanoGPT", "commit": commit,
                    "tracked_files_modified": None if edits is None else bool(edits),
                    "readme": NANOGPT_README, **{k: v for k, v in real.items()}},
        "input_txt": {"chars": len(raw.decode("utf-8")), "sha256": hashlib.sha256(raw).hexdigest()},
        "threads": args.threads, "iters": args.iters, "seed": 1337, "eval_interval": EVAL_INTERVAL,
        "loadavg_1min": {"before": load[0], "after_nanogpt": load[1], "after_reference": load[2]},
        "reference": {"script": "benchmarks/nanogpt_ref.py", "val_curve": ref_curve, "wall_s": ref["wall_s"],
                      "full_val_loss": ref["full_val_loss"]},
        "compared_steps": steps,
        "val_diff_reference_minus_nanogpt": diff,
        "max_abs_val_diff": worst,
        "equal_to_logged_precision": worst <= 5.1e-5,
    }
    path = write_result("nanogpt_check", out, Path(args.out_dir) if args.out_dir else RESULTS)
    for s in steps:
        print(f"step {s:5d}: nanoGPT {real['val_curve'][s]:.4f}  reference {ref_curve[s]:.4f}  diff {diff[s]:+.5f}")
    print(f"max |diff| {worst:.5f}; wall nanoGPT {real['wall_s']:.0f} s, reference {ref['wall_s']:.0f} s; wrote {path}")


if __name__ == "__main__":
    main()
