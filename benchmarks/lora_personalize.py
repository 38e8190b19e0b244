"""Style adapters: LoRA (rank 8) versus full fine-tuning of the bundled shakespeare-char, per user corpus.

For each corpus (Jane Austen's novels, the King James Bible) the LoRA recipe (configs/lora-<name>.toml) and
the same recipe without its [adapter] (every weight trains, at a tenth of the learning rate, as full
fine-tuning wants) run for the same steps through ``genforge.train.fit``. Then held-out perplexity per
character on the corpus's last 5% (``--eval-chars`` of it, which neither run trained on) is measured for
the base model, the LoRA model (adapter folded in) and the fully fine-tuned one, with the checkpoint
sizes, trainable parameters and wall time, and a sample of each.

    python benchmarks/lora_personalize.py [--steps 300] [--corpora austen,kjv]
    python benchmarks/lora_personalize.py --smoke --out-dir /tmp/l     # seconds, on a small corpus
Writes results/lora_personalize.json; the LoRA runs stay in runs/lora-<name> (``--runs``).
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


def train(recipe: Path, out: Path, steps: int, adapter: bool, corpus: str | None, quiet: bool) -> dict:
    from genforge.checkpoint import list_checkpoints
    from genforge.train.fit import fit

    over = [f"--train.out_dir={out}", f"--train.max_steps={steps}", f"--train.eval_interval={steps}",
            f"--train.progress={'false' if quiet else 'true'}"]
    if corpus:
        over.append(f"--data.corpus={corpus}")
    d = load_toml(recipe, over)
    if not adapter:  # full fine-tuning: the same run, every weight trainable
        d.pop("adapter")
        d["train"].update(lr=d["train"]["lr"] / 10, min_lr=d["train"]["min_lr"] / 10)
    wall = None
    if not list_checkpoints(out):
        t0 = time.perf_counter()
        fit(RunConfig.from_dict(d))
        wall = time.perf_counter() - t0  # else: reuse the finished run (its own log has the time)
    from safetensors.torch import load_file

    ckpt = list_checkpoints(out)[-1]
    meta = json.loads((ckpt / "genforge.json").read_text())
    return {"run": out.name, "checkpoint_bytes": (ckpt / "model.safetensors").stat().st_size,
            "wall_s": round(wall, 1) if wall else meta["trainer"]["elapsed_s"],
            "val_loss": meta["metrics"].get("val_loss"), "lr": d["train"]["lr"],
            "trainable": sum(t.numel() for t in load_file(str(ckpt / "model.safetensors")).values())}


def held_out(corpus: str, n: int) -> str:
    from genforge.data.corpus import read_corpus

    text = read_corpus(corpus)
    return text[int(len(text) * 0.95):][:n]


def main() -> None:
    import genforge

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpora", default="austen,kjv")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--eval-chars", type=int, default=60_000)
    p.add_argument("--runs", default="runs", help="where the runs are written (relative paths stay out of the results)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out-dir", default=str(RESULTS))
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--smoke", action="store_true", help="seconds: 3 steps on a small text, 2,000 held-out chars")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    runs = Path(args.runs)
    out = {"steps": args.steps, "eval_chars": args.eval_chars, "smoke": args.smoke, "base": "shakespeare-char",
           "corpora": {}}
    base = genforge.load("shakespeare-char")
    for name in args.corpora.split(","):
        corpus = None
        if args.smoke:
            args.steps, args.eval_chars = 3, 2000
            corpus = str(runs / "smoke.txt")
            runs.mkdir(parents=True, exist_ok=True)
            Path(corpus).write_text(held_out(name, 200_000))
        recipe = ROOT / "configs" / f"lora-{name}.toml"
        lora = train(recipe, runs / f"lora-{name}", args.steps, True, corpus, args.quiet)
        full = train(recipe, runs / f"full-{name}", args.steps, False, corpus, args.quiet)
        text = held_out(corpus or name, args.eval_chars)
        models = {"base": base, "lora": genforge.load(str(runs / f"lora-{name}")),
                  "full": genforge.load(str(runs / f"full-{name}"))}
        row = {"lora": lora, "full": full, "samples": {}}
        for who, m in models.items():
            row[f"{who}_ppl"] = m.perplexity(text)
            row["samples"][who] = m.generate("\n", max_tokens=240, temperature=0.8, seed=0)
        out["corpora"][name] = row
        print(f"{name}: held-out perplexity/char base {row['base_ppl']:.3f}, LoRA r8 {row['lora_ppl']:.3f} "
              f"({lora['checkpoint_bytes'] / 1e6:.2f} MB, {lora['wall_s']:.0f} s), full {row['full_ppl']:.3f} "
              f"({full['checkpoint_bytes'] / 1e6:.2f} MB, {full['wall_s']:.0f} s)", flush=True)
    write_result("lora_personalize", out, Path(args.out_dir))


if __name__ == "__main__":
    main()
