"""Quality and training speed on Tiny Shakespeare, nanoGPT's CPU configuration.

1. Quality: train configs/nanogpt-cpu.toml (nanoGPT's CPU config; nanoGPT reports val loss ~1.88,
   measured 1.886 in 121 s on a 2-core machine like ours) and configs/best-cpu.toml, each through
   ``genforge.train.fit``; report the val loss (nanoGPT's estimator: 20 random batches of 12 x 64)
   and the full-split val loss (every non-overlapping window), and the wall time of each run.
2. Speed: tokens/s of our training step versus a same-shaped Hugging Face ``GPT2LMHeadModel`` in a
   plain loop, alternating A B A B, medians and the ratio.

    python benchmarks/train_quality.py --corpus input.txt [--skip-quality] [--rounds 5]
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine_info, median, write_result  # noqa: E402

from genforge.config import RunConfig, load_toml  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
NANOGPT = {"val_loss": 1.886, "wall_s": 121.0, "ms_per_iter": 54.7}  # measured on a 2-core machine like ours


@torch.no_grad()
def full_val_loss(run_dir: Path, text: str) -> float:
    """Mean loss over every non-overlapping 64-token window of the last 10% of the text."""
    import genforge

    tm = genforge.load(run_dir)
    val = text[int(0.9 * len(text)):]
    return math.log(tm.perplexity(val, window=64))


def run_recipe(config: str, corpus: str, workdir: Path, overrides: list[str] = ()) -> dict:
    from genforge.train.fit import fit

    cfg = RunConfig.from_dict(load_toml(ROOT / config, [f"--data.corpus={corpus}", "--train.progress=false",
                                                        f"--train.out_dir={workdir / Path(config).stem}",
                                                        *overrides]))
    t0 = time.perf_counter()
    result = fit(cfg)
    wall = time.perf_counter() - t0
    evals = [r for r in result.history if "val_loss" in r]
    return {"config": config, "wall_s": wall, "steps": result.step, "val_loss": result.val_loss,
            "val_curve": {r["step"]: r["val_loss"] for r in evals},
            "full_val_loss": full_val_loss(result.out_dir, Path(corpus).read_text())}


def step_timer(model, opt, x, y, vocab, is_hf):
    t0 = time.perf_counter()
    logits = model(x).logits if is_hf else model(x)
    loss = F.cross_entropy(logits.view(-1, vocab), y.reshape(-1))
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return time.perf_counter() - t0


def train_speed(rounds: int, steps: int) -> dict:
    """Our model + our optimizer set-up vs HF GPT2LMHeadModel + AdamW, same shape, same batches."""
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.utils import logging as hf_logging

    from genforge.config import TrainConfig
    from genforge.models.transformer import GPT, GPTConfig
    from genforge.train.optim import make_optimizer

    hf_logging.set_verbosity_error()
    vocab, block, batch = 65, 64, 12
    torch.manual_seed(0)
    ours = GPT(GPTConfig(vocab_size=vocab, block_size=block, n_layer=4, n_head=4, n_embd=128, bias=False))
    ours_opt = make_optimizer(ours, TrainConfig(), torch.device("cpu"))
    hf = GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_positions=block, n_layer=4, n_head=4, n_embd=128,
                                    resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0,
                                    eos_token_id=0))
    hf_opt = torch.optim.AdamW(hf.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)
    g = torch.Generator().manual_seed(0)
    data = torch.randint(0, vocab, (steps, batch, block + 1), generator=g)
    runs = {"ours": [], "hf": []}
    for r in range(rounds + 1):  # round 0 is warm-up
        for name, model, opt in (("ours", ours, ours_opt), ("hf", hf, hf_opt)):
            times = [step_timer(model, opt, d[:, :-1].contiguous(), d[:, 1:].contiguous(), vocab, name == "hf")
                     for d in data]
            if r:
                runs[name].append(batch * block / median(times))
    med = {k: median(v) for k, v in runs.items()}
    return {"tokens_per_s_runs": runs, "tokens_per_s": med, "ratio": med["ours"] / med["hf"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", required=True, help="Tiny Shakespeare (char-rnn's input.txt, 1,115,394 chars)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=40, help="training steps per timing round")
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="seconds-long check that the script works")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = {"machine": machine_info(), "threads": args.threads, "nanogpt_reference": NANOGPT}
    if args.smoke:
        args.rounds, args.steps, args.skip_quality = 1, 3, True
    out["train_speed"] = train_speed(args.rounds, args.steps)
    sp = out["train_speed"]
    print(f"train tokens/s  ours {sp['tokens_per_s']['ours']:,.0f}  hf {sp['tokens_per_s']['hf']:,.0f}  "
          f"ratio {sp['ratio']:.2f}")
    if not args.skip_quality:
        with tempfile.TemporaryDirectory() as d:
            out["baseline"] = run_recipe("configs/nanogpt-cpu.toml", args.corpus, Path(d))
            out["best"] = run_recipe("configs/best-cpu.toml", args.corpus, Path(d))
        for k in ("baseline", "best"):
            r = out[k]
            print(f"{k:9s} val {r['val_loss']:.4f} (full split {r['full_val_loss']:.4f})  {r['wall_s']:.0f} s")
        out["baseline_meets_1.88"] = out["baseline"]["val_loss"] <= 1.88
        out["best_beats_baseline_in_time"] = (out["best"]["val_loss"] < min(out["baseline"]["val_loss"], 1.886)
                                              and out["best"]["wall_s"] <= max(out["baseline"]["wall_s"],
                                                                               NANOGPT["wall_s"]))
    write_result("train_quality", out, RESULTS / "smoke" if args.smoke else None)


if __name__ == "__main__":
    main()
