"""nanoGPT's Tiny Shakespeare CPU run, re-implemented as the peer for ``train_quality.py``.

The run is the CPU recipe in nanoGPT's README (https://github.com/karpathy/nanoGPT, README.md, "I
only have a macbook"): ``python train.py config/train_shakespeare_char.py`` with ``RECIPE`` below,
for which the README reports "a loss of only 1.88". nanoGPT is not a package, so this file
re-creates what its ``train.py`` and ``model.py`` do for that recipe (4 layers, 4 heads, width 128,
context 64, batch 12, 2000 iterations, lr 1e-3 -> 1e-4 cosine with 100 warmup, dropout 0, no
biases, AdamW betas (0.9, 0.99), weight decay 0.1 on matrices, clip 1.0, exact GELU, val loss
estimated from 20 batches every 250 iterations) down to the order in which it draws from the global
RNG: the model's init, the first batch, then at every 250th iteration 20 train and 20 val batches
for the loss estimate, and one train batch per iteration.

nanoGPT's train.py fixes its seed at 1337; run there, the recipe logs val 2.314 / 2.053 / 1.886 at
500 / 1000 / 2000. ``benchmarks/nanogpt_check.py`` runs the real nanoGPT (a checkout you provide)
and this file side by side at seed 1337 and records both curves, their differences and nanoGPT's
commit in ``benchmarks/results/nanogpt_check.json``. Other seeds show how far that single figure
moves.
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

BLOCK, BATCH, LAYERS, HEADS, WIDTH, ITERS = 64, 12, 4, 4, 128, 2000
LR, MIN_LR, WARMUP, EVAL_INTERVAL, EVAL_ITERS = 1e-3, 1e-4, 100, 250, 20

# nanoGPT's README, "I only have a macbook": the command line after ``python train.py``
RECIPE = ("config/train_shakespeare_char.py", "--device=cpu", "--compile=False", "--eval_iters=20", "--log_interval=1",
          "--block_size=64", "--batch_size=12", "--n_layer=4", "--n_head=4", "--n_embd=128", "--max_iters=2000",
          "--lr_decay_iters=2000", "--dropout=0.0")
NANOGPT_README = {
    "source": "https://github.com/karpathy/nanoGPT README.md, section 'I only have a macbook'",
    "command": "python train.py " + " ".join(RECIPE),
    "stated_val_loss": 1.88,  # "gets us a loss of only 1.88"
    "stated_time": "about ~3 minutes",
}


class _LayerNorm(nn.Module):  # nanoGPT's LayerNorm with bias=False
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, None, 1e-5)


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.ln_1 = _LayerNorm(WIDTH)
        self.c_attn = nn.Linear(WIDTH, 3 * WIDTH, bias=False)
        self.attn_proj = nn.Linear(WIDTH, WIDTH, bias=False)
        self.ln_2 = _LayerNorm(WIDTH)
        self.c_fc = nn.Linear(WIDTH, 4 * WIDTH, bias=False)
        self.mlp_proj = nn.Linear(4 * WIDTH, WIDTH, bias=False)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, HEADS, C // HEADS).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, C)
        x = x + self.attn_proj(y)
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x))))


class _GPT(nn.Module):
    """Modules are created in nanoGPT's order, so a seed gives nanoGPT's initial weights."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab, WIDTH)
        self.wpe = nn.Embedding(BLOCK, WIDTH)
        self.h = nn.ModuleList(_Block() for _ in range(LAYERS))
        self.ln_f = _LayerNorm(WIDTH)
        self.lm_head = nn.Linear(WIDTH, vocab, bias=False)
        self.wte.weight = self.lm_head.weight
        for m in self.modules():
            if isinstance(m, nn.Linear | nn.Embedding):
                nn.init.normal_(m.weight, mean=0.0, std=0.02)
        for name, p in self.named_parameters():
            if name.endswith(("attn_proj.weight", "mlp_proj.weight")):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * LAYERS))

    def forward(self, idx, targets):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        for block in self.h:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.reshape(-1))


def _lr(it: int, iters: int) -> float:
    if it < WARMUP:
        return LR * (it + 1) / (WARMUP + 1)
    ratio = (it - WARMUP) / (iters - WARMUP)
    return MIN_LR + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (LR - MIN_LR)


def train_reference(text: str, seed: int, threads: int = 2, iters: int = ITERS) -> dict:
    """One nanoGPT run. Returns its estimated val curve, the full-split val loss at the end (every
    non-overlapping 64-token window of the last 10%), the wall time, and the window starts of
    every training batch in order (to replay them through another trainer). ``iters`` other than
    2000 is for smoke runs (the schedule decays over ``iters``, as nanoGPT's lr_decay_iters)."""
    torch.set_num_threads(threads)
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    ids = np.array([stoi[c] for c in text], dtype=np.int64)
    n = int(0.9 * len(ids))
    data = {"train": ids[:n], "val": ids[n:]}

    def batch(split: str):
        d = data[split]
        ix = torch.randint(len(d) - BLOCK, (BATCH,))
        x = torch.stack([torch.from_numpy(d[i:i + BLOCK]) for i in ix.tolist()])
        y = torch.stack([torch.from_numpy(d[i + 1:i + 1 + BLOCK]) for i in ix.tolist()])
        return ix, x, y

    torch.manual_seed(seed)
    t0 = time.perf_counter()
    model = _GPT(len(chars))
    params = list(model.parameters())
    opt = torch.optim.AdamW([{"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
                             {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}],
                            lr=LR, betas=(0.9, 0.99))
    curve, offsets = {}, []
    ix, x, y = batch("train")
    for it in range(iters + 1):
        if it % EVAL_INTERVAL == 0 or it == iters:
            model.eval()
            with torch.no_grad():
                losses = {s: float(np.mean([model(*batch(s)[1:]).item() for _ in range(EVAL_ITERS)]))
                          for s in ("train", "val")}
            model.train()
            curve[it] = losses["val"]
        if it == iters:  # nanoGPT reports the estimate at iteration 2000, after 2000 updates
            break
        for g in opt.param_groups:
            g["lr"] = _lr(it, iters)
        offsets.append(ix)
        loss = model(x, y)
        ix, x, y = batch("train")
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    wall = time.perf_counter() - t0
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        val = torch.from_numpy(data["val"])
        for start in range(0, len(val) - 1, BLOCK):
            chunk = val[start:start + BLOCK + 1]
            total += model(chunk[None, :-1], chunk[None, 1:]).item() * (len(chunk) - 1)
            count += len(chunk) - 1
    return {"seed": seed, "val_loss": curve[iters], "val_curve": curve, "full_val_loss": total / count,
            "wall_s": wall, "offsets": offsets}
