"""The text-training parts of README.md (verse by RL and DPO), built from benchmarks/results/*.json (see report.py)."""
from __future__ import annotations

import report_format as fmt  # noqa: E402  (the script's own folder is on sys.path)


def _prose(rows: list[str]) -> str:
    """Rows joined by newlines; prose lines (not tables, code or samples) wrapped like the README."""
    fence = False
    out = []
    for row in rows:
        fence ^= row.startswith("```")
        out.append(row if fence or row.startswith(("|", "```", "*")) else fmt.wrap(row))
    return "\n".join(out)


def verse_section() -> str:
    r = fmt.load("rl_verse")
    if not r or r.get("smoke"):
        return "(not measured yet: `python benchmarks/rl_verse.py`)"
    b, g, d = r["base"], r["grpo"], r["dpo"]
    rows = [f"{r['base']['lines']} lines sampled from each model (seed 0, temperature 1), judged by "
            "`genforge.train.verse`; KL(model || base) is the mean of log P_model - log P_base over the model's own "
            f"lines. {fmt.machine(r.get('machine'), r.get('time'))}.",
            "",
            "| model | mean reward | lines that scan | distinct lines | KL from base (nats/line) | reward calls | "
            "wall |",
            "|---|---:|---:|---:|---:|---:|---:|",
            f"| base (`shakespeare-char`) | {b['mean_reward']:.3f} | {b['scan_share']:.1%} | {b['distinct']:.1%} | 0 | "
            "| |"]
    for name, m in (("GRPO", g), ("DPO", d)):
        f = m["final"]
        extra = f" (pairs: {m['pairs_s']:.0f} s)" if m.get("pairs_s") else ""
        rows.append(f"| {name} (`{m['recipe']}`, {m['steps']} steps) | {f['mean_reward']:.3f} | "
                    f"{f['scan_share']:.1%} | {f['distinct']:.1%} | {f['kl_nats_per_line']:.2f} | "
                    f"{m['reward_calls']:,} | {m['wall_s']:.0f} s{extra} |")
    rows += ["", "Evaluation reward and KL over steps (128 lines each): `benchmarks/results/rl_verse.png`.", "",
             "The first verse line of the first samples (seed 0) before and after (an empty line: the sample held only "
             "a blank line or a speaker's name):", ""]
    for name, f in (("base", b), ("GRPO", g["final"]), ("DPO", d["final"])):
        rows += [f"*{name}*", "", "```text", *f["samples"][:5], "```", ""]
    return _prose(rows).rstrip()


def lora_section() -> str:
    r = fmt.load("lora_personalize")
    if not r or r.get("smoke"):
        return "(not measured yet: `python benchmarks/lora_personalize.py`)"
    rows = [f"`python benchmarks/lora_personalize.py`: {r['steps']} steps of 16 x 256 characters on each corpus from "
            f"the bundled `{r['base']}`; perplexity per character on the last 5% of the corpus ({r['eval_chars']:,} "
            f"characters no run trained on). {fmt.machine(r.get('machine'), r.get('time'))}.", "",
            "| corpus | base | LoRA rank 8 | full fine-tuning | adapter file | full model file | "
            "trainable (LoRA / full) | wall (LoRA / full) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, c in r["corpora"].items():
        lo, fu = c["lora"], c["full"]
        rows.append(f"| {name} | {c['base_ppl']:.2f} | {c['lora_ppl']:.2f} | {c['full_ppl']:.2f} | "
                    f"{lo['checkpoint_bytes'] / 1e6:.2f} MB | {fu['checkpoint_bytes'] / 1e6:.1f} MB | "
                    f"{lo['trainable']:,} / {fu['trainable']:,} | {lo['wall_s']:.0f} s / {fu['wall_s']:.0f} s |")
    rows += ["", "Samples (temperature 0.8, seed 0) after a newline:", ""]
    for name, c in r["corpora"].items():
        for who in ("lora", "full"):
            text = " / ".join(x.strip() for x in c["samples"][who].strip().splitlines() if x.strip())[:200]
            rows.append(f"- {name}, {who}: {text}")
    return _prose(rows)


def speculative_section() -> str:
    r = fmt.load("speculative")
    if not r or r.get("smoke"):
        return "(not measured yet: `python benchmarks/speculative.py`)"
    rows = [f"`python benchmarks/speculative.py`: `{r['target']}` ({r['target_params'] / 1e6:.1f} M parameters) with "
            f"the draft `{r['draft']}` ({r['draft_params'] / 1e6:.2f} M, k = {r['k']}) or prompt lookup (k = "
            f"{r['lookup_k']}); {r['tokens']} new tokens per prompt, {len(r['prompts'])} prompts x {r['rounds']} "
            f"rounds, batch 1, {r['threads']} threads; ratios are medians of per-round paired ratios. "
            f"{fmt.machine(r.get('machine'), r.get('time'))}.", "",
            "| temperature | plain tokens/s | draft model | kept / tokens per pass | prompt lookup | "
            "kept / tokens per pass | identical to plain |",
            "|---:|---:|---:|---:|---:|---:|---|"]
    for t, x in r["by_temperature"].items():
        d, lk = x["draft"], x["lookup"]
        same = {True: "yes", False: "NO", None: "(sampled)"}[x["identical_to_plain"]]
        rows.append(f"| {t} | {x['plain']['tps_median']:.0f} | {d['ratio']['median']:.2f}x | {d['acceptance']:.0%} / "
                    f"{d['tokens_per_pass']:.2f} | {lk['ratio']['median']:.2f}x | {lk['acceptance']:.0%} / "
                    f"{lk['tokens_per_pass']:.2f} | {same} |")
    pc = r.get("pass_cost", {})
    rows += ["", f"Target: >= 1.5x at temperature 0 with identical output: "
                 f"{'met' if r['target_met'] else 'not met'}."]
    if pc:  # the ceiling the pass costs allow: tokens per round over (k draft steps + one verify pass)
        d0 = r["by_temperature"]["0.0"]["draft"]
        one, kx = pc["target_1_token_ms"], pc[f"target_{r['k'] + 1}_tokens_x"]
        ceiling = d0["tokens_per_pass"] * one / (r["k"] * pc["draft_1_token_ms"] + kx * one)
        rows[-1] += (f" One target pass costs {one:.2f} ms for 1 token and {kx:.2f}x that for {r['k'] + 1}; a "
                     f"draft step {pc['draft_1_token_ms']:.2f} ms. With {d0['tokens_per_pass']:.2f} tokens a round "
                     f"that caps the draft model at {ceiling:.2f}x; the rest of the gap to the measured "
                     f"{d0['ratio']['median']:.2f}x is per-round work outside the passes (choosing, comparing and "
                     f"rolling back tokens in Python). A draft that agrees more often ({d0['acceptance']:.0%} kept "
                     "here) is what would lift the ceiling.")
    return _prose(rows)


def bundled_lines() -> str:
    """The draft model and the style adapters among the bundled models."""
    bundled = fmt.ROOT / "src" / "genforge" / "bundled"
    meta = fmt.meta("shakespeare-char-draft")
    m = meta["model"]
    size = (bundled / "shakespeare-char-draft" / "model.safetensors").stat().st_size
    lines = [f"- `shakespeare-char-draft` ([model card](src/genforge/bundled/shakespeare-char-draft/MODEL_CARD.md)): "
             f"the draft model of speculative decoding for `shakespeare-char` (`--draft shakespeare-char-draft`), "
             f"{m['n_layer']} layers, width {m['n_embd']}, the same corpus and codec, {meta['parameters'] / 1e6:.2f} M "
             f"parameters, {size / 1e6:.1f} MB in {meta['weights_dtype']}, trained by "
             f"`configs/shakespeare-char-draft.toml` on a 2-core CPU; validation loss "
             f"{meta['metrics']['val_loss']:.3f} nats/char."]
    for name in ("austen", "kjv"):
        if not (bundled / name / "genforge.json").is_file():
            continue
        a = fmt.meta(name)
        ad, size = a["adapter"], (bundled / name / "model.safetensors").stat().st_size
        lines.append(f"- `{name}` ([model card](src/genforge/bundled/{name}/MODEL_CARD.md)): a LoRA style adapter "
                     f"(rank {ad['rank']}) of `{ad['base']}`, {size / 1e6:.2f} MB in {a['weights_dtype']}, trained "
                     f"by `configs/lora-{name}.toml` ({a['step']} steps); `--model {name}` or "
                     f"`--model {ad['base']}+{name}`; validation loss {a['metrics']['val_loss']:.3f} nats/char on "
                     "its corpus's held-out end.")
    return "\n".join(lines)
