"""GPU throughput: training tokens/s (fp32 with TF32 off, fp32 with TF32 on, bf16 autocast, and
bf16 + torch.compile) and batch-1 decode tokens/s against transformers' generate(), on whatever CUDA
card is present.

Every row says whether TF32 was allowed: "fp32" is true fp32 (``allow_tf32`` off for matmuls and
cuDNN), "tf32" is the same step with TF32 on. The results go through ``write_result``, so the JSON
records the card's name (``torch.cuda.get_device_name``), CUDA version and the rest of the machine;
by default it is named after the card (``gpu_nvidia_h200.json`` on an H200).

    python benchmarks/gpu_throughput.py                  # benchmarks/results/gpu_<card>.json
    python benchmarks/gpu_throughput.py --out-dir DIR    # DIR/gpu_<card>.json
    python benchmarks/gpu_throughput.py --smoke          # seconds: a few steps of each, results/smoke/

Without CUDA it exits with status 2 and says so.
"""
from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, paired_ratio, write_result  # noqa: E402

from genforge.models.transformer import GPT, GPTConfig  # noqa: E402

NO_CUDA_EXIT = 2
SHAPES = {
    "nanogpt-cpu (4L/128, ctx 64, batch 12)": (GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4,
                                                         n_embd=128, bias=False), 12),
    "shakespeare-char (6L/288, ctx 256, batch 64)": (GPTConfig(vocab_size=84, block_size=256, n_layer=6, n_head=6,
                                                               n_embd=288, bias=False), 64),
    "gpt2-small (12L/768, ctx 1024, batch 8)": (GPTConfig(vocab_size=50257, block_size=1024), 8),
}
MODES = ("fp32", "tf32", "bf16", "bf16+compile")  # bf16+compile on the shakespeare-char shape only


def set_tf32(on: bool) -> None:
    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on


def card_slug(name: str) -> str:
    """'NVIDIA H200' -> 'nvidia_h200': the default results name is gpu_<slug>."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "unknown"


def train_tokens_per_s(cfg: GPTConfig, batch: int, mode: str, steps: int, warmup: int = 5) -> dict:
    """Median tokens/s over ``steps`` timed training steps (after ``warmup``) in ``mode``."""
    tf32 = mode == "tf32"
    set_tf32(tf32)
    torch.manual_seed(0)
    model = GPT(cfg).cuda().train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    run = torch.compile(model) if mode == "bf16+compile" else model
    x = torch.randint(0, cfg.vocab_size, (batch, cfg.block_size + 1), device="cuda")
    times = []
    for i in range(steps + warmup):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=mode.startswith("bf16")):
            logits = run(x[:, :-1])
        loss = F.cross_entropy(logits.float().view(-1, cfg.vocab_size), x[:, 1:].reshape(-1))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        if i >= warmup:  # the first steps include compilation and allocator warm-up
            times.append(time.perf_counter() - t0)
    set_tf32(False)
    tps = [batch * cfg.block_size / t for t in times]
    return {"tokens_per_s": batch * cfg.block_size / statistics.median(times), "tf32": tf32,
            "autocast": "bf16" if mode.startswith("bf16") else None, "compile": mode == "bf16+compile",
            "steps": steps, "min_tokens_per_s": min(tps), "max_tokens_per_s": max(tps)}


def decode(rounds: int, new_tokens: int) -> dict:
    """GPT-2 124M (random weights, seed 0) in bf16, batch 1, greedy: HF generate() vs ours,
    alternating which goes first; ratio = median of the per-round ratios."""
    import tempfile

    from transformers import GPT2Config, GPT2LMHeadModel

    from genforge.models.gpt2_hf import load_gpt2_hf
    from genforge.sampling import stream_tokens
    from genforge.types import SamplingParams

    set_tf32(False)
    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config()).eval()
    with tempfile.TemporaryDirectory() as d:
        hf.save_pretrained(d)
        ours = load_gpt2_hf(d).cuda().to(torch.bfloat16).eval()
    hf = hf.cuda().to(torch.bfloat16)
    prompt = torch.randint(0, 50257, (1, 16), generator=torch.Generator().manual_seed(0))
    params = SamplingParams(max_tokens=new_tokens, temperature=0.0)

    def run_hf() -> tuple[float, list[int]]:
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = hf.generate(prompt.cuda(), attention_mask=torch.ones_like(prompt).cuda(), max_new_tokens=new_tokens,
                          min_new_tokens=new_tokens, do_sample=False, pad_token_id=0)
        torch.cuda.synchronize()
        return new_tokens / (time.perf_counter() - t0), out[0, 16:].tolist()

    def run_ours() -> tuple[float, list[int]]:
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        toks = [t for t, _ in stream_tokens(ours, prompt[0].tolist(), params)]
        torch.cuda.synchronize()
        return new_tokens / (time.perf_counter() - t0), toks

    res: dict[str, list[float]] = {"hf": [], "ours": []}
    tokens = {}
    for r in range(rounds + 1):  # round 0 warms up
        order = (("hf", run_hf), ("ours", run_ours)) if r % 2 == 0 else (("ours", run_ours), ("hf", run_hf))
        for k, fn in order:
            tps, tokens[k] = fn()
            if r:
                res[k].append(tps)
    agree = sum(a == b for a, b in zip(tokens["hf"], tokens["ours"]))
    return {"dtype": "bf16", "new_tokens": new_tokens, "rounds": rounds,
            "tokens_per_s": {k: statistics.median(v) for k, v in res.items()}, "raw": res,
            "paired_ratio": paired_ratio(res["ours"], res["hf"]),
            "greedy_tokens_agreeing": agree}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", help="results folder (default benchmarks/results, or results/smoke)")
    ap.add_argument("--name", help="results name (default gpu_<card>, e.g. gpu_nvidia_h200)")
    ap.add_argument("--steps", type=int, default=30, help="timed training steps per shape and mode")
    ap.add_argument("--rounds", type=int, default=5, help="decode rounds (after one warm-up)")
    ap.add_argument("--smoke", action="store_true", help="seconds: 3 steps, the small shapes, 1 round of 16 tokens")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print(f"gpu_throughput.py needs a CUDA GPU: torch {torch.__version__} sees none "
              "(torch.cuda.is_available() is False); nothing measured, nothing written", file=sys.stderr)
        return NO_CUDA_EXIT
    torch.cuda.init()
    card = torch.cuda.get_device_name(0)
    shapes = dict(list(SHAPES.items())[:2]) if args.smoke else SHAPES
    steps, rounds, new_tokens = (3, 1, 16) if args.smoke else (args.steps, args.rounds, 128)
    result: dict = {"device": card, "modes": {"fp32": "fp32, TF32 off (matmul and cuDNN)",
                                              "tf32": "fp32 tensors, TF32 matmuls allowed",
                                              "bf16": "bf16 autocast, TF32 off",
                                              "bf16+compile": "bf16 autocast + torch.compile, TF32 off"},
                    "smoke": args.smoke, "train_tokens_per_s": {}}
    for name, (cfg, batch) in shapes.items():
        row = {}
        for mode in MODES:
            if mode == "bf16+compile" and not name.startswith("shakespeare"):
                continue
            row[mode] = train_tokens_per_s(cfg, batch, mode, steps)
            print(f"{name:48s} {mode:13s} {row[mode]['tokens_per_s']:>12,.0f} tokens/s", flush=True)
        result["train_tokens_per_s"][name] = row
    result["decode_gpt2_small_bf16_batch1"] = dec = decode(rounds, new_tokens)
    pr = dec["paired_ratio"]
    print(f"decode bf16 batch 1: ours {dec['tokens_per_s']['ours']:.0f}, HF {dec['tokens_per_s']['hf']:.0f} tokens/s, "
          f"paired ratio {pr['median']:.2f} (min {pr['min']:.2f}, max {pr['max']:.2f})", flush=True)
    out_dir = Path(args.out_dir) if args.out_dir else (RESULTS / "smoke" if args.smoke else RESULTS)
    path = write_result(args.name or f"gpu_{card_slug(card)}", result, out_dir)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
