"""Quality and training speed on Tiny Shakespeare, nanoGPT's CPU configuration.

1. Quality, side by side with the peer: for each seed, nanoGPT's CPU run (``nanogpt_ref.py``, a
   re-implementation of the CPU recipe in nanoGPT's README, which reports "a loss of only 1.88";
   ``nanogpt_check.py`` runs the real nanoGPT beside it at seed 1337 and records both curves),
   ours with configs/nanogpt-cpu.toml through ``genforge.train.fit`` (nanoGPT's training settings
   on our model: rotary positions, ReLU squared), and ours again with nanoGPT's exact model
   (``--model.position=learned --model.activation=gelu``). Each reports its val loss estimate (20
   random batches of 12 x 64, nanoGPT's estimator), the full-split val loss (every non-overlapping window of the last
   10%) and the wall time. Then ours with nanoGPT's model on the peer's exact batch sequence (seed
   1337): with the same initial weights (same seed, same module order) and the same batches the two
   trainers must end at the same loss. Our best recipe (configs/best-cpu.toml) runs on every seed
   too.
2. Speed: tokens/s of our training step versus Hugging Face's ``GPT2LMHeadModel`` in the same
   configuration (shape, biases, activation, fused AdamW), in the same plain loop, alternating;
   medians, and the median of the paired per-round ratios with their spread.

    python benchmarks/train_quality.py --corpus input.txt [--skip-quality] [--rounds 5] [--seeds 1337,1,2]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, median, paired_ratio, write_result  # noqa: E402

from genforge.config import RunConfig, load_toml  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def nanogpt_reference(results: Path = RESULTS) -> dict:
    """What nanoGPT's README states for the CPU recipe, and the side-by-side check of the real
    nanoGPT against ``nanogpt_ref.py`` from results/nanogpt_check.json when it has been run."""
    from nanogpt_ref import NANOGPT_README

    out: dict = {"readme": NANOGPT_README}
    check = results / "nanogpt_check.json"
    if check.is_file():
        c = json.loads(check.read_text())
        out["check"] = {"file": "benchmarks/results/nanogpt_check.json", "time": c["time"],
                        "nanogpt_commit": c["nanogpt"]["commit"], "nanogpt_val_curve": c["nanogpt"]["val_curve"],
                        "reference_val_curve": c["reference"]["val_curve"], "max_abs_val_diff": c["max_abs_val_diff"]}
    return out


@torch.no_grad()
def full_val_loss(run_dir: Path, text: str) -> float:
    """Mean loss over every non-overlapping 64-token window of the last 10% of the text."""
    import genforge

    tm = genforge.load(run_dir)
    val = text[int(0.9 * len(text)):]
    return math.log(tm.perplexity(val, window=64))


@contextlib.contextmanager
def replayed_batches(offsets: list[torch.Tensor]):
    """Make fit()'s training sampler draw these window starts, in order, instead of its own."""
    from genforge.data import loader

    own = loader.WindowSampler._offsets

    def replay(sampler):
        return offsets[sampler.batches] if sampler.split == "train" else own(sampler)

    loader.WindowSampler._offsets = replay
    try:
        yield
    finally:
        loader.WindowSampler._offsets = own


def run_recipe(config: str, corpus: str, workdir: Path, overrides: list[str] = (), threads: int = 2,
               name: str | None = None) -> dict:
    from genforge.train.fit import fit

    name = name or "-".join([Path(config).stem, *(o.split("=")[-1] for o in overrides)])
    cfg = RunConfig.from_dict(load_toml(ROOT / config, [f"--data.corpus={corpus}", "--train.progress=false",
                                                        f"--train.out_dir={workdir / name}",
                                                        f"--train.threads={threads}", *overrides]))
    t0 = time.perf_counter()
    result = fit(cfg)
    wall = time.perf_counter() - t0
    evals = [r for r in result.history if "val_loss" in r]
    return {"config": config, "overrides": list(overrides), "seed": cfg.train.seed, "wall_s": wall,
            "steps": result.step, "val_loss": result.val_loss,
            "val_curve": {r["step"]: r["val_loss"] for r in evals},
            "full_val_loss": full_val_loss(result.out_dir, Path(corpus).read_text())}


def _stats(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "n": len(values)}


def quality(corpus: str, seeds: list[int], threads: int, steps: int | None = None) -> dict:
    """Over the same seeds, alternating: nanoGPT (peer), ours, ours with nanoGPT's model, and our
    best recipe; then the replay. ``steps`` shortens every run (smoke runs only)."""
    from nanogpt_ref import ITERS, train_reference

    text = Path(corpus).read_text()
    short = [f"--train.max_steps={steps}"] if steps else []
    nanogpt_model = ["--model.position=learned", "--model.activation=gelu"]  # nanoGPT's exact model
    ours = {"ours": ("configs/nanogpt-cpu.toml", []), "ours_learned": ("configs/nanogpt-cpu.toml", nanogpt_model),
            "best": ("configs/best-cpu.toml", [])}
    runs = ("nanogpt", *ours)
    out: dict = {"seeds": seeds, "steps": steps or ITERS, **{k: [] for k in runs}}
    with tempfile.TemporaryDirectory() as d:
        for seed in seeds:
            ref = train_reference(text, seed, threads, steps or ITERS)
            if seed == seeds[0]:
                replay_offsets = ref["offsets"]
            out["nanogpt"].append({k: v for k, v in ref.items() if k != "offsets"})
            for k, (config, extra) in ours.items():
                out[k].append(run_recipe(config, corpus, Path(d), [f"--train.seed={seed}", *extra, *short], threads))
            for k in runs:
                r = out[k][-1]
                print(f"seed {seed:5d} {k:12s} val {r['val_loss']:.4f} (full split {r['full_val_loss']:.4f}) "
                      f"{r['wall_s']:.0f} s", flush=True)
        with replayed_batches(replay_offsets):
            out["ours_on_nanogpt_batches"] = run_recipe("configs/nanogpt-cpu.toml", corpus, Path(d),
                                                        [f"--train.seed={seeds[0]}", *nanogpt_model, *short], threads,
                                                        "replay")
    for k in runs:
        out[f"{k}_summary"] = {m: _stats([r[m] for r in out[k]]) for m in ("val_loss", "full_val_loss", "wall_s")}
        out[f"{k}_mean_meets_1.88"] = out[f"{k}_summary"]["val_loss"]["mean"] <= 1.88
    mine, ref, best = out["ours_summary"], out["nanogpt_summary"], out["best_summary"]
    out["ours_every_seed_meets_1.88"] = mine["val_loss"]["max"] <= 1.88 and mine["full_val_loss"]["max"] <= 1.88
    out["replay_full_val_diff"] = out["ours_on_nanogpt_batches"]["full_val_loss"] - out["nanogpt"][0]["full_val_loss"]
    # lower than both baselines on average, on both estimates, in no more than nanoGPT's time
    out["best_beats_baseline_in_time"] = (
        all(best[m]["mean"] < min(mine[m]["mean"], ref[m]["mean"]) for m in ("val_loss", "full_val_loss"))
        and best["wall_s"]["mean"] <= ref["wall_s"]["mean"])
    out["best_beats_ours_per_seed"] = sum(b["full_val_loss"] < o["full_val_loss"]
                                          for b, o in zip(out["best"], out["ours"]))
    return out


def step_timer(model, opt, x, y, vocab, is_hf):
    t0 = time.perf_counter()
    logits = model(x).logits if is_hf else model(x)
    loss = F.cross_entropy(logits.view(-1, vocab), y.reshape(-1))
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return time.perf_counter() - t0


# Like-for-like pairs: (ours, HF peer, what they share). Both sides of a pair have GPT-2's layout
# with biases (HF's GPT-2 always has them), learned positions, tied embeddings, the same activation
# and the same optimizer (make_optimizers: one fused AdamW, lr 1e-3, betas (0.9, 0.99), decay 0.1
# on matrices only), and run the same loop on the same batches.
SPEED_PAIRS = {
    "gelu_tanh": ("ours_gelu_tanh", "hf_gelu_new", "tanh GELU (ours: F.gelu(approximate='tanh'); HF: gelu_new)"),
    "gelu": ("ours_gelu", "hf_gelu", "exact GELU (nanoGPT's activation)"),
}
RECIPE_MODEL = "ours_rope_relu2"  # configs/nanogpt-cpu.toml's model: no biases, RoPE, ReLU^2 (no HF twin)


def train_speed(rounds: int, steps: int) -> dict:
    """Training tokens/s of our GPT against Hugging Face's ``GPT2LMHeadModel`` in the same
    configuration, per activation (``SPEED_PAIRS``), plus the model configs/nanogpt-cpu.toml trains.

    Shape: nanoGPT's CPU configuration (4 layers, 4 heads, width 128, context 64, batch 12, vocab 65).
    Every model gets the same optimizer from ``make_optimizers`` (fused AdamW) and the same step
    (forward, cross-entropy, backward, clip 1.0, step). Each round feeds ``steps`` batches; every
    batch goes through every model in turn (the order reverses round by round), so the steps of a
    pair run milliseconds apart; a model's figure for a round is its median step. Ratios are the
    median of the paired per-round ratios, with their spread.
    The recipe model has no Hugging Face twin (HF's GPT-2 has no RoPE, ReLU^2 or bias-free option):
    its ratio to HF with the exact GELU compares different models and is labelled so.
    """
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.utils import logging as hf_logging

    from genforge.config import TrainConfig
    from genforge.models.transformer import GPT, GPTConfig
    from genforge.train.optim import make_optimizers

    hf_logging.set_verbosity_error()
    vocab, block, batch = 65, 64, 12
    shape = dict(n_layer=4, n_head=4, n_embd=128)
    opt_cfg = TrainConfig(lr=1e-3, beta1=0.9, beta2=0.99, weight_decay=0.1)
    torch.manual_seed(0)
    models, config = {}, {}
    ours_specs = {"ours_gelu_tanh": dict(bias=True, activation="gelu_tanh", position="learned"),
                  "ours_gelu": dict(bias=True, activation="gelu", position="learned"),
                  RECIPE_MODEL: dict(bias=False, activation="relu2", position="rope")}
    for name, spec in ours_specs.items():
        models[name] = GPT(GPTConfig(vocab_size=vocab, block_size=block, dropout=0.0, **shape, **spec))
        config[name] = {"library": "genforge", **spec}
    for name, act in (("hf_gelu_new", "gelu_new"), ("hf_gelu", "gelu")):
        models[name] = GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_positions=block, **shape, resid_pdrop=0.0,
                                                  embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0,
                                                  activation_function=act))
        config[name] = {"library": "transformers GPT2LMHeadModel", "bias": True, "activation": act,
                        "position": "learned", "attn_implementation": models[name].config._attn_implementation}
    opts = {}
    for name, model in models.items():
        (opts[name],) = make_optimizers(model, opt_cfg, torch.device("cpu"))
        d = opts[name].defaults
        config[name].update(parameters=sum(p.numel() for p in model.parameters()),
                            optimizer={"class": type(opts[name]).__name__, "fused": bool(d.get("fused")),
                                       "foreach": d.get("foreach"), "lr": d["lr"], "betas": list(d["betas"]),
                                       "weight_decay": [g["weight_decay"] for g in opts[name].param_groups]})
    for ours, peer, _ in SPEED_PAIRS.values():  # like for like, or the comparison is void
        a, b = config[ours], config[peer]
        assert a["bias"] == b["bias"] and a["position"] == b["position"] and a["optimizer"] == b["optimizer"], (a, b)
        assert a["parameters"] == b["parameters"], (ours, a["parameters"], peer, b["parameters"])
    g = torch.Generator().manual_seed(0)
    data = torch.randint(0, vocab, (steps, batch, block + 1), generator=g)
    names = list(models)
    runs = {k: [] for k in models}
    load = []
    for r in range(rounds + 1):  # round 0 is warm-up
        times = {k: [] for k in models}
        for d in data:  # every model takes this step, one after another: a pair's steps are ms apart
            x, y = d[:, :-1].contiguous(), d[:, 1:].contiguous()
            for name in (names if r % 2 == 0 else names[::-1]):
                times[name].append(step_timer(models[name], opts[name], x, y, vocab, name.startswith("hf")))
        if r:
            for name in names:
                runs[name].append(batch * block / median(times[name]))
            load.append(os.getloadavg()[0])  # > threads: other work shared the cores
    pairs = {act: {"ours": ours, "peer": peer, "what": what, **paired_ratio(runs[ours], runs[peer])}
             for act, (ours, peer, what) in SPEED_PAIRS.items()}
    recipe = {"ours": RECIPE_MODEL, "peer": "hf_gelu", "like_for_like": False,
              "what": "configs/nanogpt-cpu.toml's model (no biases, RoPE, ReLU^2) vs HF GPT-2 with exact GELU",
              **paired_ratio(runs[RECIPE_MODEL], runs["hf_gelu"])}
    return {"shape": {"vocab_size": vocab, "block_size": block, "batch_size": batch, **shape},
            "rounds": rounds, "steps_per_round": steps, "loadavg_1min_per_round": load, "config": config,
            "tokens_per_s_runs": runs,
            "tokens_per_s": {k: median(v) for k, v in runs.items()}, "paired_ratio": pairs,
            "recipe_vs_hf_gelu": recipe}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", required=True, help="Tiny Shakespeare (char-rnn's input.txt, 1,115,394 chars)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=40, help="training steps per timing round")
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--seeds", default="1337,1,2,3,4", help="seeds for the nanoGPT vs ours comparison")
    ap.add_argument("--smoke", action="store_true", help="seconds-long check that the script works")
    ap.add_argument("--quality-steps", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out-dir", help="results folder (default benchmarks/results, or results/smoke)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = {"threads": args.threads, "nanogpt_reference": nanogpt_reference()}
    if args.smoke:  # seconds: one speed round, one seed of 30 steps (the replay still must match)
        args.rounds, args.steps, args.seeds, args.quality_steps = 1, 3, "1", 30
    out["train_speed"] = train_speed(args.rounds, args.steps)
    sp = out["train_speed"]
    tps = sp["tokens_per_s"]
    for pr in (*sp["paired_ratio"].values(), sp["recipe_vs_hf_gelu"]):
        print(f"train tokens/s  {pr['ours']} {tps[pr['ours']]:,.0f}  {pr['peer']} {tps[pr['peer']]:,.0f}  "
              f"paired ratio {pr['median']:.2f} (min {pr['min']:.2f}, max {pr['max']:.2f}): {pr['what']}")
    if not args.skip_quality:
        out["quality"] = quality(args.corpus, [int(x) for x in args.seeds.split(",")], args.threads,
                                 args.quality_steps)
        q = out["quality"]
        for k in ("nanogpt", "ours", "ours_learned", "best"):
            v, f = q[f"{k}_summary"]["val_loss"], q[f"{k}_summary"]["full_val_loss"]
            print(f"{k:12s} over {v['n']} seeds: val {v['mean']:.4f} +- {v['sd']:.4f} "
                  f"(full split {f['mean']:.4f} +- {f['sd']:.4f})")
        r = q["ours_on_nanogpt_batches"]
        print(f"ours (nanoGPT's model) on nanoGPT's seed-{q['seeds'][0]} batches: full split "
              f"{r['full_val_loss']:.4f} vs nanoGPT {q['nanogpt'][0]['full_val_loss']:.4f} "
              f"(diff {q['replay_full_val_diff']:+.4f})")
        b = q["best_summary"]
        print(f"best recipe: val {b['val_loss']['mean']:.4f} in {b['wall_s']['mean']:.0f} s; better than ours "
              f"in {q['best_beats_ours_per_seed']} of {len(q['seeds'])} seeds")
    out_dir = Path(args.out_dir) if args.out_dir else (RESULTS / "smoke" if args.smoke else None)
    previous = (out_dir or RESULTS) / "train_quality.json"
    if args.skip_quality and previous.is_file():  # re-measuring speed keeps the last quality runs
        old = json.loads(previous.read_text())
        if "quality" in old:  # with when, where and on how many threads it was measured
            out["quality"] = old["quality"]
            for key, fallback in (("measured", "time"), ("machine", "machine"), ("threads", "threads")):
                out[f"quality_{key}"] = old.get(f"quality_{key}", old.get(fallback))
    write_result("train_quality", out, out_dir)


if __name__ == "__main__":
    main()
