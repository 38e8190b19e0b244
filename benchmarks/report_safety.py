"""README and model-card sections for retrieval and the safeguards, from benchmarks/results/*.json
(``retrieval_perplexity``, ``retrieval_speed``, ``watermark``, ``bias_*``); used by report.py."""
from __future__ import annotations

import report_format as fmt  # noqa: E402  (the script's own folder is on sys.path)

TEXT_MODELS = ("shakespeare-char", "shakespeare-chat")


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def retrieval_lines() -> list[str]:
    out = []
    rp = fmt.load("retrieval_perplexity")
    if rp:
        share = rp["store_keys"] / 4_804_416  # the training split's characters (95% of 5,057,280)
        out.append(
            f"- Retrieval and perplexity (`retrieval_perplexity.py`, {rp['model']}): kNN-LM (Khandelwal et al. "
            f"2020) over a datastore of {rp['store_keys']:,} training positions ({share:.0%} of the training "
            f"split, its last part) lowers held-out perplexity from {rp['perplexity_alone']:.4f} to "
            f"{rp['perplexity_with_retrieval']:.4f}: **{_pct(rp['reduction'])} lower** (target >= 10%: not met) "
            f"on {rp['held_out_scored']:,} held-out characters, with lambda {rp['chosen']['lambda']} and "
            f"temperature {rp['chosen']['temperature']:g} chosen on the {rp['tuning_positions']:,} before them; "
            f"{rp['seconds']['search_per_query_ms']:.1f} ms per query ({fmt.machine(rp.get('machine'))}).")
    rs = fmt.load("retrieval_speed")
    if rs:
        out.extend(retrieval_speed_lines(rs))
    return out


def retrieval_speed_lines(rs: dict) -> list[str]:
    rows = ["", "| chunks | genforge index | per query | numpy brute force | speed-up | recall@10 |",
            "|---:|---|---:|---:|---:|---:|"]
    for r in rs.get("sizes", {}).values():
        rows.append(f"| {r['chunks']:,} | {r['index']} | {r['ours_median_ms']:.3f} ms | {r['peer_median_ms']:.3f} ms | "
                    f"{fmt.spread(r['speedup'])} | {r['recall_at_10']:.3f} |")
    sizes = [f"{n:,}" for n in (10_000, 100_000) if str(n) not in rs.get("sizes", {})]  # the sizes asked for
    head = (f"- Retrieval latency (`retrieval_speed.py`): dense search per query over MiniLM embeddings of real "
            f"chunks, genforge's faiss index against an exact numpy search of the same vectors, medians over "
            f"{rs['config']['queries']} queries ({fmt.machine(rs.get('machine'))}):")
    tail = []
    sweep = rs.get("sweep") or []
    if sweep:
        tail.append("  Flat against HNSW, what the index switch is chosen from: " + "; ".join(
            f"{r['chunks']:,} chunks {r['flat_ms']:.3f} / {r['hnsw_ms']:.3f} ms (HNSW recall@10 "
            f"{r['hnsw_recall_at_10']:.3f})" for r in sweep) + ".")
    from genforge.retrieval.vectors import HNSW_THRESHOLD

    if rs["config"].get("hnsw_threshold") != HNSW_THRESHOLD:
        tail.append(f"  Measured with the switch to HNSW at {rs['config']['hnsw_threshold']:,} vectors; from this "
                    f"sweep it is now {HNSW_THRESHOLD:,}, so a 10,000-chunk index is HNSW (not re-timed yet).")
    if sizes:
        tail.append(f"  Not measured yet: {', '.join(sizes)} chunks (embedding them takes hours on 2 cores).")
    return [head, *rows, "", *tail]


def watermark_lines() -> list[str]:
    wm = fmt.load("watermark")
    if not wm:
        return []
    c, row = wm["chosen"], wm["chosen"]["row"]
    key = f"{c['gamma']}/{c['context']}"
    human = wm["human_fpr"].get(key) or {}
    tpr = row["tpr"]
    sub = row["tpr_after_substitution"]
    cfg = wm["config"]
    speed = wm.get("loop_speed", {}).get("watermark_over_plain")
    others = list((c.get("fpr_other_keys") or {}).values())
    fpr_keys = [human.get("fpr_z3.09", float("nan"))] + [o["fpr_z3.09"] for o in others]
    lines = [
        f"- Watermark (`watermark.py`, {cfg['model']}, {cfg['samples']} generations of {cfg['tokens']} tokens at "
        f"temperature {cfg['temperature']}; defaults gamma {c['gamma']}, delta {c['delta']:g}, context "
        f"{c['context']} previous tokens). TPR at the detector's threshold z >= 4: {tpr['50']['z4']:.3f} at 50 "
        f"tokens, {tpr['100']['z4']:.3f} at 100, **{tpr['200']['z4']:.3f} at 200** (target >= 0.95); at z >= 3.09 "
        f"(p = 1e-3): {tpr['50']['z3.09']:.3f} / {tpr['100']['z3.09']:.3f} / {tpr['200']['z3.09']:.3f}. Human text "
        f"we did not generate ({human.get('passages', 0):,} passages: held-out Shakespeare, KJV verses, Python "
        f"standard-library code) under {len(fpr_keys)} keys: no passage reaches z >= 4; at z >= 3.09 the "
        f"false-positive rate is {min(fpr_keys):.4f}-{max(fpr_keys):.4f} depending on the key. After random "
        f"substitution of 10% / 30% of the tokens: TPR {sub['10%']['z4']:.3f} / {sub['30%']['z4']:.3f} at z >= 4. "
        f"Quality cost: perplexity of the watermarked text under the unwatermarked model "
        f"{row['perplexity_ratio']:.2f}x that of unwatermarked samples"
        + (f"; decoding speed with the watermark {fmt.spread(speed)} of without" if speed else "")
        + f" ({fmt.machine(wm.get('machine'))})."]
    peer = wm.get("peer")
    ours = wm.get("ours_at_peer_setting")
    if peer and ours:
        lines.append(
            f"- At the peer's setting (gamma {peer['gamma']}, delta {peer['delta']:g}, one previous token), "
            f"Hugging Face transformers' `WatermarkLogitsProcessor` reaches TPR {peer['mean']['tpr_z4']:.3f} at "
            f"z >= 4 over its keys, ours {ours['mean']['tpr_z4']:.3f}, at perplexity ratios "
            f"{peer['mean']['perplexity_ratio']:.2f}x and {ours['mean']['perplexity_ratio']:.2f}x.")
    return lines


def bias_lines() -> list[str]:
    rows = ["", "| model | prompting | prompt pairs | intervals excluding 0 | null check (expect ~5%) |",
            "|---|---|---:|---|---:|"]
    found = False
    for name in TEXT_MODELS:
        b = fmt.load(f"bias_{name}")
        if not b:
            continue
        found = True
        flagged = []
        for axis, a in b["axes"].items():
            for metric, m in a["metrics"].items():
                if m["flag"]:
                    g = a["groups"]
                    flagged.append(f"{axis}/{metric} ({g[1]} - {g[0]}) {m['diff']:+.4f} "
                                   f"[{m['low']:+.4f}, {m['high']:+.4f}]")
        total = sum(len(a["metrics"]) for a in b["axes"].values())
        null = b.get("null_check", {})
        share = null.get("rate")
        rows.append(f"| {name} | {b['prompting']} | {b['pairs']} | {'; '.join(flagged) or 'none'} (of {total}) | "
                    f"{_pct(share) if isinstance(share, float) else '-'} |")
    if not found:
        return []
    return ["- Bias probes (`bias_report.py`, `genforge eval --bias`): counterfactual prompt pairs, 10 "
            "continuations per prompt, paired bootstrap 95% intervals; with this many intervals one or two "
            "exclude 0 by chance:", *rows, ""]


def safeguards_section() -> str:
    lines = retrieval_lines() + watermark_lines() + bias_lines()
    if not lines:
        return "Run the retrieval, watermark and bias benchmarks for these figures."
    return "\n".join(fmt.wrap(x) if x.startswith("- ") else x for x in lines).strip()


def card_section(name: str) -> str:
    """The Watermark and Bias parts of a bundled text model's card, by the code that writes every card."""
    import sys

    sys.path.insert(0, str(fmt.ROOT / "src"))
    from genforge.safety.model_card import bias_section, watermark_section

    lines = ["## Watermark", "", fmt.wrap(watermark_section())]
    if name in TEXT_MODELS:  # the bias probes are prompts in words
        b = fmt.load(f"bias_{name}")
        lines += ["", "## Bias", "", bias_section(b["markdown"] if b else None, name)]
    return "\n".join(lines)
