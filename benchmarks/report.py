"""Build the README's results table from benchmarks/results/*.json (never typed by hand).

    python benchmarks/report.py          # print the table
    python benchmarks/report.py --write  # replace the table between the markers in README.md
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
START, END = "<!-- results:start -->", "<!-- results:end -->"


def _load(name: str) -> dict | None:
    p = RESULTS / f"{name}.json"
    return json.loads(p.read_text()) if p.is_file() else None


def rows() -> list[str]:
    out = ["| what | ours | peer | ratio / target | file |", "|---|---|---|---|---|"]
    tq = _load("train_quality")
    if tq:
        sp = tq["train_speed"]
        out.append(f"| training tokens/s, nanoGPT CPU config's shape in GPT-2's layout, {tq['threads']} threads "
                   f"| {sp['tokens_per_s']['ours']:,.0f} | HF GPT2LMHeadModel {sp['tokens_per_s']['hf']:,.0f} "
                   f"| {sp['ratio']:.2f}x (target >= 1.3) "
                   "| train_quality.json |")
        if "hf_exact_gelu" in sp["tokens_per_s"]:
            out.append(f"| training tokens/s, same, HF with the exact GELU of nanoGPT's config "
                       f"| {sp['tokens_per_s']['ours']:,.0f} | HF {sp['tokens_per_s']['hf_exact_gelu']:,.0f} "
                       f"| {sp['ratio_vs_hf_exact_gelu']:.2f}x | train_quality.json |")
        if "ours_rope_relu2" in sp["tokens_per_s"]:
            out.append(f"| training tokens/s, same, our model (RoPE, ReLU^2: configs/nanogpt-cpu.toml) "
                       f"| {sp['tokens_per_s']['ours_rope_relu2']:,.0f} | HF {sp['tokens_per_s']['hf']:,.0f}; "
                       f"HF exact GELU {sp['tokens_per_s']['hf_exact_gelu']:,.0f} | {sp['ratio_rope_relu2']:.2f}x; "
                       f"{sp['ratio_rope_relu2_vs_hf_exact_gelu']:.2f}x | train_quality.json |")
        q = tq.get("quality")
        if q:
            ours, ref = q["ours_summary"], q["nanogpt_summary"]
            n, first = ours["val_loss"]["n"], q["nanogpt"][0]

            def cell(sm):
                v, f, w = sm["val_loss"], sm["full_val_loss"], sm["wall_s"]
                return (f"{v['mean']:.4f} +- {v['sd']:.4f} (full split {f['mean']:.4f}), "
                        f"{w['mean']:.0f} s")

            every = " (every seed, both estimates)" if q.get("ours_every_seed_meets_1.88") else ""
            out.append(f"| val loss, Tiny Shakespeare, nanoGPT CPU config (our model: RoPE, ReLU^2), mean of {n} "
                       f"seeds | {cell(ours)} "
                       f"| nanoGPT {cell(ref)}; seed {first['seed']}: {first['val_loss']:.4f} "
                       f"| <= 1.88: {'met' + every if q['ours_mean_meets_1.88'] else 'not met'} (nanoGPT's own "
                       f"mean: {'met' if q['nanogpt_mean_meets_1.88'] else 'not met'}) | train_quality.json |")
            if "ours_learned_summary" in q:
                learned = q["ours_learned_summary"]
                out.append(f"| val loss, same, ours with nanoGPT's model (learned positions, GELU) | {cell(learned)} "
                           f"| nanoGPT {cell(ref)} | <= 1.88: "
                           f"{'met' if q['ours_learned_mean_meets_1.88'] else 'not met'} | train_quality.json |")
            r = q["ours_on_nanogpt_batches"]
            out.append(f"| val loss (full split), nanoGPT's model, on nanoGPT's own seed-{first['seed']} batches | "
                       f"{r['full_val_loss']:.4f} | nanoGPT {first['full_val_loss']:.4f} "
                       f"| {q['replay_full_val_diff']:+.4f} | train_quality.json |")
            b = q["best_summary"]
            out.append(f"| val loss, our best recipe (configs/best-cpu.toml), mean of {n} seeds | {cell(b)} "
                       f"| nanoGPT {cell(ref)}; ours on nanoGPT's config {cell(ours)} | lower in <= the same "
                       f"time: {'yes' if q['best_beats_baseline_in_time'] else 'no'} (below ours in "
                       f"{q['best_beats_ours_per_seed']} of {n} seeds) | train_quality.json |")
    gs = _load("generate_speed")
    if gs:
        tps, frac = gs["median_tokens_per_s"], gs.get("fraction_of_bound", {})
        for k, label in (("fp32", "fp32"), ("int8", "int8 (fbgemm)")):
            out.append(f"| GPT-2 124M batch-1 greedy decode, {label}, tokens/s | {tps[k]:.1f} "
                       f"({frac.get(k, 0):.0%} of bandwidth bound) | HF generate fp32 {tps['hf']:.1f} "
                       f"({frac.get('hf', 0):.0%}) | {gs['median_paired_ratio'][k]:.2f}x (target "
                       f"{'>= 1.2' if k == 'fp32' else '>= 2.5'}) | generate_speed.json |")
        mem = gs.get("memory")
        if mem:
            for k, m in mem.items():
                if isinstance(m, dict) and "peak_rss_mb" in m:
                    out.append(f"| peak RSS of generation, {k} | {m['peak_rss_mb']:.0f} MB | limit "
                               f"{m.get('limit_mb', 0):.0f} MB | {'within' if m.get('within_limit') else 'OVER'} "
                               "| generate_speed.json |")
        ppl = gs.get("int8_perplexity")
        if ppl and "relative_diff" in ppl:
            out.append(f"| int8 held-out perplexity vs fp32 ({ppl.get('model', '')}) | {ppl['int8']:.4f} "
                       f"| fp32 {ppl['fp32']:.4f} | {ppl['relative_diff']:+.2%} (target within 1%) "
                       "| generate_speed.json |")
    sl = _load("serve_load")
    if sl:
        for n, lv in sl["levels"].items():
            out.append(f"| server, {n} concurrent streams (shakespeare-char, 128 tokens) | {lv['tokens_per_s']:,.0f} "
                       f"tokens/s, TTFT p50 {lv['ttft_p50_s'] * 1e3:.0f} ms / p95 {lv['ttft_p95_s'] * 1e3:.0f} ms "
                       "| | | serve_load.json |")
        sc, ov = sl["scaling"], sl["overhead"]
        out.append(f"| server, 16 streams vs 1 (aggregate tokens/s) | {sc['ratio']:.2f}x | | target >= 4 "
                   "| serve_load.json |")
        out.append(f"| server, one stream vs in-process generate | {ov['median_tokens_per_s']['server']:.0f} tokens/s "
                   f"| in-process {ov['median_tokens_per_s']['in_process']:.0f} | {ov['median_ratio']:.2f}x "
                   "(target >= 0.9) | serve_load.json |")
    gpu = _load("gpu_h200")
    if gpu:
        t = gpu["train_tokens_per_s"]
        for shape, modes in t.items():
            cells = ", ".join(f"{m} {v:,.0f}" for m, v in modes.items())
            out.append(f"| {gpu['device']} training tokens/s, {shape} | {cells} | | | gpu_h200.json |")
        d = gpu["decode_gpt2_small_bf16_batch1"]
        out.append(f"| {gpu['device']} GPT-2 124M batch-1 decode, bf16, tokens/s | {d['tokens_per_s']['ours']:.0f} "
                   f"| HF generate {d['tokens_per_s']['hf']:.0f} | {d['ratio']:.2f}x | gpu_h200.json |")
    return out


def main() -> None:
    table = "\n".join(rows())
    if "--write" not in sys.argv:
        print(table)
        return
    readme = ROOT / "README.md"
    text = readme.read_text()
    if START not in text or END not in text:
        sys.exit(f"README.md has no {START} ... {END} markers")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{table}\n{END}{tail}")


if __name__ == "__main__":
    main()
