"""Verse from the bundled Shakespeare model: GRPO versus DPO toward iambic pentameter, at equal reward calls.

Both recipes start from ``shakespeare-char`` and score one line at a time with
``genforge.train.verse:pentameter`` (CMU Pronouncing Dictionary): configs/rl-pentameter.toml (GRPO, Shao et
al. 2024, on-policy: 300 steps of 32 lines = 9,600 reward calls, with a per-token KL penalty to the base)
and configs/dpo-pentameter.toml (DPO, Rafailov et al. 2023, offline: 4,800 pairs sampled from the base before
training = 9,600 reward calls, then 300 steps of 32 pairs). Each run goes through ``genforge.train.fit``.

Then the base and both tuned models are judged the same way: ``--final`` lines sampled (seed 0,
temperature 1, prompt "\\n", up to the next newline): mean reward, the share of lines that scan as
iambic pentameter, distinct lines, and KL(model || base) estimated as the mean of log P_model - log P_base
over the model's own lines (nats per line; 0 for the base). Compute: reward calls, sampled tokens and wall
seconds (DPO's include building its pairs). The first lines of each model are kept as samples.

    python benchmarks/rl_verse.py                  # both runs (about 25 minutes on 2 cores), then judge
    python benchmarks/rl_verse.py --reuse          # judge the runs already in runs/
    python benchmarks/rl_verse.py --smoke --out-dir /tmp/v   # seconds: 3 steps, 16 pairs, 32 lines
Writes results/rl_verse.json and results/rl_verse.png (reward and KL over steps, both methods).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, write_result  # noqa: E402

from genforge.config import RunConfig, load_toml  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RECIPES = {"grpo": "configs/rl-pentameter.toml", "dpo": "configs/dpo-pentameter.toml"}
RUNS = {"grpo": "rl-pentameter", "dpo": "dpo-pentameter"}  # the recipes' out_dir names


def load(path: str | Path):
    """(model, codec) of a bundled name or a run folder, weights in float32 on the CPU, eval mode."""
    from genforge.checkpoint import load_tensors, load_weights, read_meta
    from genforge.codecs import codec_from_dict
    from genforge.models import build_model
    from genforge.store import resolve_model

    p = resolve_model(str(path))
    meta = read_meta(p)
    fields = {k: v for k, v in meta["model"].items() if k != "kind"}
    model = build_model(meta["model"]["kind"], {**fields, "dropout": 0.0}, init=False)
    load_weights(model, load_tensors(p, "model.safetensors", meta), p)
    return model.float().eval(), codec_from_dict(meta["codec"])


@torch.no_grad()
def judge(model, base, codec, n: int, max_tokens: int) -> dict:
    from genforge.sampling.tokens import sample_sequences
    from genforge.train.rl_core import collate, token_logps
    from genforge.train.verse import pentameter, scan, verse_lines
    from genforge.types import SamplingParams

    prompt, eol = codec.encode("\n"), codec.encode("\n")[0]
    params = SamplingParams(max_tokens=max_tokens, temperature=1.0, top_k=0, top_p=1.0)
    seqs = sample_sequences(model, prompt, n, params, eol, torch.Generator().manual_seed(0), batch_size=128)
    items = [codec.decode(prompt + s) for s in seqs]
    kl = []
    for i in range(0, n, 128):
        ids, mask = collate(prompt, seqs[i:i + 128], 0)
        kl += ((token_logps(model, ids) - token_logps(base, ids)) * mask).sum(-1).tolist()
    lines = [(verse_lines(t, 1) or [""])[0] for t in items]
    return {"lines": n, "mean_reward": sum(pentameter(items)) / n, "scan_share": sum(scan(x).scans for x in lines) / n,
            "distinct": len(set(lines)) / n, "kl_nats_per_line": sum(kl) / n,
            "mean_chars": sum(len(x) for x in lines) / n, "samples": lines[:8]}


def train(method: str, args: argparse.Namespace) -> dict:
    from genforge.train.fit import fit

    run = Path(args.runs) / RUNS[method]
    over = [f"--train.out_dir={run}", "--train.progress=false" if args.quiet else "--train.progress=true"]
    if args.smoke:
        over += ["--train.max_steps=3", "--train.eval_interval=3", "--task.eval_samples=8", "--train.batch_size=8"]
        over += ["--task.pairs=16"] if method == "dpo" else []
    cfg = RunConfig.from_dict(load_toml(ROOT / RECIPES[method], over))
    if not args.reuse or not (run / "metrics.jsonl").is_file():
        print(f"{method}: training {cfg.train.max_steps} steps into {run}", flush=True)
        fit(cfg)
    recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in recs if "loss" in r]
    logged = [r for r in recs if "reward" in r or "margin" in r]  # the task's own per-step records
    evals = [r for r in recs if "val_reward" in r]
    pairs_s = logged[-1].get("pairs_built_s", 0.0)
    # reward calls: logged by the task; a run logged before that samples train.batch_size lines a step
    calls = logged[-1].get("reward_evals") or steps[-1]["step"] * cfg.train.batch_size
    return {"recipe": RECIPES[method], "run": str(run.relative_to(ROOT)) if run.is_relative_to(ROOT) else run.name,
            "steps": steps[-1]["step"], "reward_calls": calls, "sampled_lines": calls,
            "train_s": steps[-1]["elapsed_s"], "pairs_s": pairs_s,
            "wall_s": round(steps[-1]["elapsed_s"] + pairs_s, 1), "pairs": logged[-1].get("pairs"),
            "curve": [{k: r[k] for k in ("step", "val_reward", "val_hits", "val_kl")} for r in evals],
            "train_curve": [{k: r[k] for k in ("step", "reward", "hits", "kl", "margin", "pref_acc") if k in r}
                            for r in logged]}


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=100)
    for m, style in (("grpo", "-o"), ("dpo", "--s")):
        c = [{"step": 0, "val_reward": res["base"]["mean_reward"], "val_kl": 0.0}] + res[m]["curve"]
        a.plot([r["step"] for r in c], [r["val_reward"] for r in c], style, label=m.upper(), ms=4)
        b.plot([r["step"] for r in c], [r["val_kl"] for r in c], style, label=m.upper(), ms=4)
    a.set(xlabel="step", ylabel="mean reward (128 lines)", title="pentameter reward")
    b.set(xlabel="step", ylabel="KL(model || base), nats / line", title="distance from the base")
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", default="runs", help="where the two runs are written (or read)")
    p.add_argument("--reuse", action="store_true", help="judge existing runs instead of training them again")
    p.add_argument("--final", type=int, default=512, help="lines sampled from each model to judge it")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out-dir", default=str(RESULTS))
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--smoke", action="store_true", help="seconds: 3 steps, 16 pairs, 32 lines")
    args = p.parse_args()
    if args.smoke:
        args.final = 32
    torch.set_num_threads(args.threads)
    res = {m: train(m, args) for m in RECIPES}
    base, codec = load("shakespeare-char")
    t0 = time.perf_counter()
    res["base"] = judge(base, base, codec, args.final, 80)
    for m in RECIPES:
        model, _ = load(Path(args.runs) / RUNS[m])
        res[m]["final"] = judge(model, base, codec, args.final, 80)
    for who in ("base", "grpo", "dpo"):
        f = res[who] if who == "base" else res[who]["final"]
        print(f"{who:5s} reward {f['mean_reward']:.3f}  scans {f['scan_share']:.3f}  KL {f['kl_nats_per_line']:.2f}  "
              f"distinct {f['distinct']:.3f}" + ("" if who == "base" else f"  wall {res[who]['wall_s']:.0f} s"))
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plot(res, out / "rl_verse.png")
    write_result("rl_verse", {"smoke": args.smoke, "judge_s": round(time.perf_counter() - t0, 1), **res,
                              "plot": "rl_verse.png"}, out)


if __name__ == "__main__":
    main()
