"""The molecule parts of README.md and the moses-smiles model card, built from benchmarks/results/*.json and the
bundled model's genforge.json (see report.py)."""
from __future__ import annotations

import report_format as fmt  # noqa: E402  (the script's own folder is on sys.path)

NAME = "moses-smiles"
CARD = f"src/genforge/bundled/{NAME}/MODEL_CARD.md"
TARGETS = {"valid": (">=", 0.95), "unique@10k": (">=", 0.998), "novelty": (">=", 0.85), "FCD/Test": ("<=", 1.0)}
CHARRNN_PARAMS = 12_033_178  # genforge's RNNLM with 3 LSTM layers of 768 on this vocabulary (MOSES's shape)
SHOWN = ("valid", "unique@1k", "unique@10k", "novelty", "FCD/Test", "FCD/TestSF", "SNN/Test", "SNN/TestSF",
         "Frag/Test", "Frag/TestSF", "Scaf/Test", "Scaf/TestSF", "IntDiv", "IntDiv2", "Filters", "logP", "SA",
         "QED", "weight")


def _charrnn() -> dict:
    from genforge.eval.moses_metrics import MOSES_CHARRNN

    return MOSES_CHARRNN


def _target(key: str, value: float) -> str:
    if key not in TARGETS:
        return ""
    op, bound = TARGETS[key]
    met = value >= bound if op == ">=" else value <= bound
    return f"{op} {fmt.num(bound)}: {'met' if met else 'not met'}"


def moses_table() -> list[str]:
    ev = fmt.load("moses_smiles")
    if not ev:
        return ["(not measured yet: `genforge eval --model moses-smiles --json benchmarks/results/moses_smiles.json`)"]
    ours, ref = ev["metrics"], _charrnn()
    out = [f"MOSES metrics of `{ev['model']}`, {ev['samples']:,} samples at temperature 1 (seed {ev['seed']}), "
           "against the MOSES test (Test) and scaffold-test (TestSF) sets, beside the published CharRNN row "
           "(MOSES README, mean of 3 runs; logP..weight: Wasserstein-1 distance to the test set, lower is better):",
           "", "| metric | ours | CharRNN (MOSES) | target |", "|---|---|---|---|"]
    for k in SHOWN:
        if k in ours:
            r = ref.get(k)
            out.append(f"| {k} | {ours[k]:.4f} | {'-' if r is None else f'{r:.4f}'} | {_target(k, ours[k])} |")
    return out


def scale_line() -> list[str]:
    """How far the bundled run's budget is from the published CharRNN's (MOSES: a 3-layer, 768-wide LSTM,
    80 epochs of batch 64, ``moses/char_rnn/config.py``)."""
    from genforge.codecs.smiles import SMILES_TOKEN
    from genforge.data.molecules import moses_smiles

    meta, test = fmt.meta(NAME), moses_smiles("test")
    tr, m = meta["config"]["train"], meta["model"]
    per_mol = len(SMILES_TOKEN.findall("".join(test))) / len(test) + 2  # + <bos>, <eos>
    seen = tr["max_steps"] * tr["batch_size"] * m["block_size"] / per_mol
    charrnn = 80 * 1_584_663
    return [f"- What would close the gap: the bundled model saw about {seen / 1e6:.2f} M molecules "
            f"({seen / 1_584_663:.2f} passes over the training split, {per_mol:.1f} tokens a molecule) with "
            f"{meta['parameters'] / 1e6:.1f} M parameters; the published CharRNN (3 LSTM layers of 768) trained for 80 "
            "passes, about "
            f"{charrnn / seen:.0f}x as many molecules, with {CHARRNN_PARAMS / meta['parameters']:.1f}x the parameters "
            f"({CHARRNN_PARAMS / 1e6:.1f} M)."]


def rl_lines() -> list[str]:
    rl = fmt.load("rl_molecules")
    if not rl:
        return ["- RL: not measured yet (`python benchmarks/rl_molecules.py`)."]
    out = []
    s = rl["settings"]
    for t in rl["tasks"].values():
        first = t.get("first_step_best_ge_0.8")
        line = (f"- RL, `{t['recipe']}` ({s['batch']} samples a step, from `{s['prior'].split(' (')[0]}`): best reward "
                f"{t['best_reward']:.3f} in {t['steps_run']} steps"
                + (f" (first >= {t['threshold']:g} at step {first})" if first is not None else "")
                + f"; validity {t['validity_mean']:.3f} on average over the run ({t['validity_last_100_mean']:.3f} "
                f"over the last 100 steps, lowest 20-step mean {t['validity_min_20_step_mean']:.3f}); unique "
                f"{t['unique_last_100_mean']:.3f} over the last 100 steps; {t['s_per_step']:.2f} s a step "
                f"({t['wall_s'] / 60:.0f} minutes). Targets: best >= 0.8 within 500 steps "
                f"{'met' if first is not None and first <= 500 else 'not met'}; validity >= 0.9 throughout "
                f"{'met' if t['validity_min_20_step_mean'] >= 0.9 else 'not met (in 20-step means)'}")
        p, a = t["final_samples"]["prior"], t["final_samples"]["agent"]
        line += (f". {a['n']:,} samples after RL against {p['n']:,} from the prior: validity {p['validity']:.3f} -> "
                 f"{a['validity']:.3f}, unique {p['unique']:.3f} -> {a['unique']:.3f}, IntDiv {p['intdiv']:.3f} -> "
                 f"{a['intdiv']:.3f}, mean reward of the valid ones {p['mean_reward_valid']:.3f} -> "
                 f"{a['mean_reward_valid']:.3f}, share of the unique valid ones with reward >= {t['threshold']:g} "
                 f"{p['share_of_unique_above']:.3f} -> {a['share_of_unique_above']:.3f}")
        out.append(line + f" ([plot](benchmarks/results/{t['plot']})).")
    peer = (rl.get("peer") or {}).get("olivecrona_2017")
    if peer:
        out.append(f"- For comparison, REINVENT (Olivecrona et al. 2017): {peer}.")
    return out


def speed_line() -> list[str]:
    sp = fmt.load("molecule_sampling")
    if not sp:
        return []
    return [f"- Sampling speed, batch {sp['batch']}, {sp['threads']} threads: {sp['ours_median']:,.0f} molecules/s "
            f"against {sp['peer_median']:,.0f} for a plain PyTorch LSTM loop (REINVENT's shape) with the same "
            f"weights: {fmt.spread(sp['ratio'])} (`molecule_sampling.json`; {fmt.machine(sp.get('machine'))})."]


def molecules_section() -> str:
    lines = moses_table() + [""] + scale_line() + speed_line() + rl_lines()
    return "\n".join(fmt.wrap(x) if x.startswith("- ") or (x and not x.startswith("|")) else x for x in lines)


def bundled_line() -> str:
    meta = fmt.meta(NAME)
    m = meta["model"]
    size = (fmt.ROOT / "src" / "genforge" / "bundled" / NAME / "model.safetensors").stat().st_size
    line = (f"- `{NAME}` ([model card]({CARD})): a {m['n_layer']}-layer LSTM (hidden {m['hidden']}) over SMILES "
            f"tokens, {meta['parameters'] / 1e6:.2f} M parameters, {size / 1e6:.1f} MB in {meta['weights_dtype']}, "
            f"trained by `configs/{NAME}.toml` on the MOSES training split on a 2-core CPU; validation loss "
            f"{meta['metrics']['val_loss']:.3f} nats/token")
    ev = fmt.load("moses_smiles")
    if ev:
        line += f"; {ev['metrics']['valid']:.1%} of its samples are valid molecules (MOSES metrics below)"
    return line + "."


def card_section() -> str:
    meta = fmt.meta(NAME)
    m, tr, data = meta["model"], meta["config"]["train"], meta["config"]["data"]
    size = (fmt.ROOT / "src" / "genforge" / "bundled" / NAME / "model.safetensors").stat().st_size
    tokens = tr["max_steps"] * tr["batch_size"] * m["block_size"]
    rows = ["| | |", "|---|---|",
            f"| architecture | {m['n_layer']}-layer {m['cell'].upper()} language model over SMILES tokens: embedding "
            f"{m['n_embd']}, hidden {m['hidden']}, trained on windows of {m['block_size']} tokens |",
            f"| parameters | {meta['parameters']:,} ({size / 1e6:.1f} MB as {meta['weights_dtype']} safetensors) |",
            f"| codec | the regex SMILES tokenizer: {m['vocab_size'] - 3} SMILES tokens of the training set plus "
            "`<pad>`, `<bos>`, `<eos>` |",
            f"| data | the MOSES training split (`molsets==0.3.1`): 1,584,663 molecules, RDKit-canonical SMILES, one "
            f"per line; the last {data['val_fraction']:.0%} of tokens held out for validation |",
            f"| recipe | `configs/{NAME}.toml`: AdamW (lr {fmt.num(tr['lr'])}, cosine to {fmt.num(tr['min_lr'])}, "
            f"{tr['warmup_steps']} warmup steps), batch {tr['batch_size']} x {m['block_size']} tokens, "
            f"{tr['max_steps']:,} steps ({tokens / 1e6:.1f} M tokens) |",
            f"| validation loss | {meta['metrics']['val_loss']:.4f} nats/token at step {meta['step']:,} |"]
    ev = fmt.load("moses_smiles")
    if ev:
        o = ev["metrics"]
        rows.append(f"| MOSES ({ev['samples']:,} samples) | valid {o['valid']:.3f}, unique@10k {o['unique@10k']:.4f}, "
                    f"novelty {o['novelty']:.3f}, FCD/Test {o['FCD/Test']:.3f}, SNN/Test {o['SNN/Test']:.3f}, "
                    f"IntDiv {o['IntDiv']:.3f} (`benchmarks/results/moses_smiles.json`, {ev['time'][:10]}) |")
    return "\n".join(rows)
