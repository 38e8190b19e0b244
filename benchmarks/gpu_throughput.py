"""GPU throughput: training tokens/s (fp32, bf16 autocast, bf16 + torch.compile) and batch-1 decode
tokens/s against transformers' generate(), on whatever CUDA card is present.

    python benchmarks/gpu_throughput.py --out benchmarks/results/gpu.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from genforge.models.transformer import GPT, GPTConfig
from genforge.sampling.decode import stream_tokens
from genforge.types import SamplingParams

SHAPES = {
    "nanogpt-cpu (4L/128, ctx 64, batch 12)": (GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4,
                                                         n_embd=128, bias=False), 12),
    "shakespeare-char (6L/288, ctx 256, batch 64)": (GPTConfig(vocab_size=84, block_size=256, n_layer=6, n_head=6,
                                                               n_embd=288, bias=False), 64),
    "gpt2-small (12L/768, ctx 1024, batch 8)": (GPTConfig(vocab_size=50257, block_size=1024), 8),
}


def train_tokens_per_s(cfg: GPTConfig, batch: int, mode: str, steps: int = 30) -> float:
    torch.manual_seed(0)
    model = GPT(cfg).cuda().train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    run = torch.compile(model) if mode == "bf16+compile" else model
    x = torch.randint(0, cfg.vocab_size, (batch, cfg.block_size + 1), device="cuda")
    times = []
    for i in range(steps + 5):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=mode != "fp32"):
            logits = run(x[:, :-1])
        loss = F.cross_entropy(logits.float().view(-1, cfg.vocab_size), x[:, 1:].reshape(-1))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        if i >= 5:  # the first steps include compilation and allocator warm-up
            times.append(time.perf_counter() - t0)
    return batch * cfg.block_size / statistics.median(times)


def decode(rounds: int = 3) -> dict:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config()).cuda().eval().to(torch.bfloat16)
    import tempfile

    from genforge.models.gpt2_hf import load_gpt2_hf

    with tempfile.TemporaryDirectory() as d:
        hf.save_pretrained(d)
        ours = load_gpt2_hf(d).cuda().to(torch.bfloat16).eval()
    prompt = torch.randint(0, 50257, (1, 16), generator=torch.Generator().manual_seed(0))
    params = SamplingParams(max_tokens=128, temperature=0.0)
    res = {"hf": [], "ours": []}
    hf_tokens = ours_tokens = None
    for r in range(rounds + 1):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = hf.generate(prompt.cuda(), max_new_tokens=128, min_new_tokens=128, do_sample=False, pad_token_id=0)
        torch.cuda.synchronize()
        t_hf = time.perf_counter() - t0
        t0 = time.perf_counter()
        toks = [t for t, _ in stream_tokens(ours, prompt[0].tolist(), params)]
        torch.cuda.synchronize()
        t_ours = time.perf_counter() - t0
        if r:  # round 0 warms up
            res["hf"].append(128 / t_hf)
            res["ours"].append(128 / t_ours)
        hf_tokens, ours_tokens = out[0, 16:].tolist(), toks
    agree = sum(a == b for a, b in zip(hf_tokens, ours_tokens))
    return {"tokens_per_s": {k: statistics.median(v) for k, v in res.items()}, "raw": res,
            "ratio": statistics.median(res["ours"]) / statistics.median(res["hf"]),
            "greedy_tokens_agreeing_of_128_bf16": agree}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = True
    result = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "train_tokens_per_s": {}}
    for name, (cfg, batch) in SHAPES.items():
        row = {}
        modes = ("fp32", "bf16", "bf16+compile") if name.startswith("shakespeare") else ("fp32", "bf16")
        for mode in modes:
            row[mode] = train_tokens_per_s(cfg, batch, mode)
            print(f"{name:48s} {mode:13s} {row[mode]:>12,.0f} tokens/s", flush=True)
        result["train_tokens_per_s"][name] = row
    result["decode_gpt2_small_bf16_batch1"] = decode()
    print(json.dumps(result["decode_gpt2_small_bf16_batch1"]["tokens_per_s"]), flush=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
