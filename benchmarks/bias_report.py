"""Bias probes of the bundled text models, with a calibration check of their intervals on the same data.

For each model: ``genforge.safety.bias`` (counterfactual prompt pairs, VADER sentiment and lexicon rates,
paired bootstrap 95% intervals over prompt pairs; ``shakespeare-chat`` through its chat template, the
prompt as the user's turn). Beside it, the reference any interval should meet: under the null hypothesis
(no group difference) a pair's B - A is as likely as A - B, so flipping the sign of a random half of the
pairs' differences gives data with no effect; the share of such null intervals that exclude 0 should be
about 5%. That share, measured on the model's own per-pair differences, says whether the bootstrap is
calibrated at this number of pairs.

    python benchmarks/bias_report.py                    # both models, n=10, ~2-4 minutes each on one core
    python benchmarks/bias_report.py --models shakespeare-char --n 20
    python benchmarks/bias_report.py --smoke            # seconds, results/smoke/

Writes results/bias_MODEL.json per model (the report, its Markdown section, the null check, the time) and
results/bias_report.json (a summary of all).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, write_result  # noqa: E402


def null_flag_rate(report: dict, rounds: int, resamples: int, seed: int) -> dict:
    """Share of intervals excluding 0 after random sign flips of the per-pair differences (no effect left)."""
    from genforge.safety.bias import METRICS, paired_bootstrap

    rng = np.random.default_rng(seed)
    flags = total = 0
    for axis in report["axes"]:
        rows = [p for p in report["per_pair"] if p["axis"] == axis]
        for m in METRICS:
            d = np.array([p["b"][m] - p["a"][m] for p in rows])
            if not d.any():
                continue  # a metric that never fired on this axis: every interval is [0, 0]
            for r in range(rounds):
                iv = paired_bootstrap(d * rng.choice([-1.0, 1.0], len(d)), resamples, seed + r)
                flags += iv.flagged
                total += 1
    return {"rounds_per_metric": rounds, "intervals": total, "flagged": flags,
            "rate": flags / total if total else None, "expected": 0.05}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["shakespeare-char", "shakespeare-chat"])
    ap.add_argument("--n", type=int, default=10, help="continuations per prompt")
    ap.add_argument("--max-tokens", type=int, default=60)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--resamples", type=int, default=2000)
    ap.add_argument("--null-rounds", type=int, default=100, help="sign-flip rounds per axis and metric")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--out-dir", default=None)
    args = ap.parse_args()
    every = 1
    if args.smoke:
        args.n, args.max_tokens, args.resamples, args.null_rounds, every = 2, 8, 200, 5, 4
    torch.set_num_threads(args.threads)
    import genforge
    from genforge.safety.bias import bias_markdown, format_table, model_sampler, prompt_pairs, run_probes

    out_dir = Path(args.out_dir) if args.out_dir else (RESULTS / "smoke" if args.smoke else RESULTS)
    summary = {}
    for name in args.models:
        tm = genforge.load(name)
        sampler = model_sampler(tm, args.max_tokens, args.temperature)
        chat = sampler.prompting == "chat template"
        pairs = prompt_pairs(chat)[::every]
        t, cpu = time.perf_counter(), time.process_time()
        report = run_probes(sampler, pairs, args.n, args.seed, args.resamples)
        seconds, cpu_seconds = time.perf_counter() - t, time.process_time() - cpu  # CPU time: shared machines
        report = {"model": name, "prompting": sampler.prompting, "max_tokens": args.max_tokens,
                  "temperature": args.temperature, **report}
        null = null_flag_rate(report, args.null_rounds, min(args.resamples, 500), args.seed)
        flagged = [f"{axis}/{m}" for axis, r in report["axes"].items() for m, v in r["metrics"].items() if v["flag"]]
        print(f"{name} ({sampler.prompting} prompting): {report['pairs']} prompt pairs x {args.n}, {seconds:.0f} s "
              f"({cpu_seconds:.0f} s CPU); "
              f"null check: {null['flagged']}/{null['intervals']} sign-flipped intervals exclude 0 "
              f"({(null['rate'] or 0):.1%}, expected ~5%)")
        print(format_table(report))
        path = write_result(f"bias_{name}", {**report, "seconds": seconds, "cpu_seconds": cpu_seconds,
                                             "threads": args.threads,
                                             "smoke": args.smoke, "null_check": null,
                                             "markdown": bias_markdown(report)}, out_dir)
        print(f"wrote {path}")
        summary[name] = {"file": path.name, "prompting": sampler.prompting, "pairs": report["pairs"],
                         "seconds": seconds, "cpu_seconds": cpu_seconds, "flagged": flagged,
                         "null_flag_rate": null["rate"]}
    path = write_result("bias_report", {"smoke": args.smoke, "n": args.n, "max_tokens": args.max_tokens,
                                        "temperature": args.temperature, "seed": args.seed, "models": summary},
                        out_dir)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
