"""RL on molecules from the bundled SMILES prior: celecoxib rediscovery and a QED + logP objective.

Each task runs its recipe (configs/rl-celecoxib.toml, configs/rl-qed-logp.toml: REINVENT's augmented
likelihood, Olivecrona et al. 2017, with experience replay and a diversity filter, Blaschke et al. 2020)
through ``genforge.train.fit`` for ``--steps`` steps of ``--batch`` molecules on the CPU, and records
from the run's metrics.jsonl the reward over steps (mean and best so far), validity, uniqueness,
internal diversity (IntDiv1) and KL to the prior, the first step whose best reward reaches 0.8, and
the wall time. Then ``--final`` molecules sampled (seed 0, temperature 1) from the prior and from the
final agent are scored the same way: validity, uniqueness, IntDiv, mean reward of the valid ones, and
the share of the samples that are unique valid molecules scoring >= the recipe's threshold ("hits").

Targets (the issue's): celecoxib: best similarity >= 0.8 within 500 steps of 64 samples while validity
stays >= 0.9. Peer (published, not rerun): Olivecrona et al. 2017 report that their agent (a 3 x 1024 GRU
prior on ChEMBL, canonical prior, similarity capped at k = 1) generated celecoxib itself as about a third
of its samples after 1000 steps; the MOSES training set our prior learned from has no celecoxib.

    python benchmarks/rl_molecules.py [--prior moses-smiles] [--steps 500] [--batch 64] [--threads 1]
    python benchmarks/rl_molecules.py --smoke --prior runs/some-smiles-run --out-dir /tmp/rl
Writes results/rl_molecules.json and results/rl_celecoxib.png, results/rl_qed_logp.png (reward over steps).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, write_result  # noqa: E402

from genforge.config import RunConfig, load_toml  # noqa: E402
from genforge.errors import ConfigError, GenforgeError  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TASKS = {"celecoxib": ("configs/rl-celecoxib.toml", "rl_celecoxib.png"),
         "qed_logp": ("configs/rl-qed-logp.toml", "rl_qed_logp.png")}
CURVE_KEYS = ("reward", "best_reward", "score", "validity", "unique", "intdiv", "kl", "hits")


def score_samples(smiles: list[str], reward, threshold: float) -> dict:
    """Validity, uniqueness, IntDiv, mean reward (valid ones), hits (unique valid molecules scoring >= threshold
    per sample) and the share of the unique valid molecules scoring >= threshold, of a list of sampled SMILES."""
    from genforge.train.rewards import MoleculeDomain

    dom = MoleculeDomain(None)
    keys = dom.keys(smiles)
    valid = [k for k in keys if k is not None]
    uniq = sorted(set(valid))
    r = dict(zip(uniq, reward(uniq))) if uniq else {}
    top = sorted(r.items(), key=lambda kv: -kv[1])[:10]
    return {"n": len(smiles), "validity": len(valid) / len(smiles), "unique": len(uniq) / max(1, len(valid)),
            "intdiv": dom.diversity(uniq[:1000]), "mean_reward_valid": sum(r[k] for k in valid) / max(1, len(valid)),
            "hits": sum(v >= threshold for v in r.values()) / len(smiles),  # unique valid >= threshold / samples
            "share_of_unique_above": sum(v >= threshold for v in r.values()) / max(1, len(uniq)),
            "best": [{"smiles": k, "reward": round(v, 4)} for k, v in top]}


def run_task(name: str, args: argparse.Namespace, out_dir: Path, work: Path) -> dict:
    import genforge
    from genforge.train.fit import fit
    from genforge.train.rewards import load_reward
    from genforge.train.tasks.rl import plot_rewards

    recipe, png = TASKS[name]
    run = work / name
    overrides = [f"--task.prior={args.prior}", f"--train.out_dir={run}", f"--train.max_steps={args.steps}",
                 f"--train.batch_size={args.batch}", f"--train.threads={args.threads}", "--train.progress=false",
                 f"--train.seed={args.seed}", f"--train.eval_interval={max(1, args.steps // 5)}"]
    cfg = RunConfig.from_dict(load_toml(ROOT / recipe, overrides))
    t = cfg.task
    reward, _ = load_reward(t["reward"], t.get("reward_args") or None)
    threshold = float(t.get("reward_threshold", 0.8))
    print(f"{name}: {args.steps} steps of {args.batch} from {args.prior_source}", flush=True)
    t0 = time.perf_counter()
    stopped = None
    try:
        fit(cfg)
    except GenforgeError as e:  # a mode-collapse stop: report it with what ran
        if isinstance(e, ConfigError) or not (run / "metrics.jsonl").is_file():
            raise
        stopped = str(e)
        print(f"{name}: {stopped}", flush=True)
    wall = time.perf_counter() - t0
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    curve = [r for r in recs if "reward" in r]
    (out_dir / png).write_bytes(plot_rewards(curve, f"{t['reward'].split(':')[-1]} from {args.prior_source.split()[0]}"
                                                    f" ({args.batch} samples/step)"))
    first = next((r["step"] for r in curve if r["best_reward"] >= 0.8), None)
    val = [r["validity"] for r in curve]
    windows = [sum(val[i:i + 20]) / len(val[i:i + 20]) for i in range(0, len(val), 20)]
    final = {}
    for who, path in (("prior", args.prior), ("agent", run)):
        model = genforge.load(str(path))
        final[who] = score_samples(model.sample(args.final, seed=0), reward, threshold)
    print(f"{name}: best {curve[-1]['best_reward']:.3f} (>= 0.8 at step {first}), validity mean "
          f"{sum(val) / len(val):.3f} min-20-step {min(windows):.3f}, wall {wall:.0f} s; final agent {final['agent']}",
          flush=True)
    return {"recipe": recipe, "reward": t["reward"], "threshold": threshold, "steps_run": curve[-1]["step"],
            "stopped": stopped, "wall_s": round(wall, 1), "s_per_step": round(wall / max(1, curve[-1]["step"]), 3),
            "best_reward": curve[-1]["best_reward"], "first_step_best_ge_0.8": first,
            "validity_mean": sum(val) / len(val), "validity_min_20_step_mean": min(windows),
            "validity_last_100_mean": sum(val[-100:]) / len(val[-100:]),
            "unique_last_100_mean": sum(r["unique"] for r in curve[-100:]) / len(curve[-100:]),
            "hits_last_100_mean": sum(r["hits"] for r in curve[-100:]) / len(curve[-100:]),
            "final_samples": final, "plot": png, "task": {**t, "prior": args.prior_source.split(" (")[0]},
            "curve": [{k: round(r[k], 4) if isinstance(r.get(k), float) else r.get(k) for k in ("step", *CURVE_KEYS)
                       if k in r} for r in curve]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prior", default="moses-smiles", help="bundled name, model folder or run folder of a SMILES model")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--final", type=int, default=1000, help="molecules sampled from the prior and the final agent")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--out-dir", default=str(RESULTS))
    p.add_argument("--keep", default=None, help="keep the RL runs in this folder (default: a temporary one)")
    p.add_argument("--smoke", action="store_true", help="seconds: 3 steps of 16, 32 final samples")
    args = p.parse_args()
    if args.smoke:
        args.steps, args.batch, args.final = 3, 16, 32
    torch.set_num_threads(args.threads)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="rl-bench-"))
    from genforge.store import resolve_model

    source = resolve_model(args.prior)  # a snapshot: a training run may prune its checkpoints meanwhile
    sha = json.loads((source / "genforge.json").read_text()).get("files", {}).get("model.safetensors", "")
    root = Path(__file__).resolve().parent.parent
    shown = source.relative_to(root) if source.is_relative_to(root) else source.name  # no machine paths
    args.prior_source = f"{args.prior} ({shown}, weights sha256 {sha[:12]})"
    args.prior = str(work / "prior")
    shutil.copytree(source, args.prior, dirs_exist_ok=True)
    try:
        results = {name: run_task(name, args, out_dir, work) for name in args.tasks.split(",")}
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    write_result("rl_molecules", {
        "settings": {"prior": args.prior_source, "steps": args.steps, "batch": args.batch, "final_samples": args.final,
                     "threads": args.threads, "seed": args.seed, "smoke": args.smoke},
        "targets": {"celecoxib": "best similarity >= 0.8 within 500 steps of 64 samples, validity >= 0.9"},
        "peer": {"olivecrona_2017": "celecoxib about a third of the agent's samples after 1000 steps (ChEMBL "
                 "3x1024 GRU prior, canonical prior, k = 1); published, not rerun"},
        "tasks": results}, out_dir)


if __name__ == "__main__":
    main()
