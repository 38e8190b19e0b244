"""Diffusion speed against `diffusers`, same network shape, same process: sampling and a training step.

Ours: ``genforge.models.unet.UNet`` (32 -> 64 -> 64 channels at 28 -> 14 -> 7 pixels, two residual
blocks a level, attention at 7x7 and in the middle, 10 classes + null) with the DDIM sampler of
``genforge.sampling.diffusion`` on the cosine schedule. Peer: ``diffusers.UNet2DModel`` built to the
same shape (``block_out_channels=(32, 64, 64)``, ``layers_per_block=2``, attention in the last down and
first up block and the middle, ``norm_num_groups=8``, 4 heads, ``num_class_embeds=11``) with
``DDIMScheduler`` (``squaredcos_cap_v2``, 1000 steps). Both run fp32 on the CPU with the same torch threads.

* sampling: 64 class-conditional 28x28 images with 50 DDIM steps (no guidance), images/s;
* training: one AdamW (fused) step on a batch of 64 at random noise levels, ms per step.

The variants alternate (ours, peer, peer, ours, ...) for ``--rounds`` rounds; each ratio is the median of
the per-round ratios (``common.paired_ratio``), with its spread. Targets: >= 1.0 for both.

    python benchmarks/diffusion_speed.py              # a few minutes on 2 cores
    python benchmarks/diffusion_speed.py --smoke      # seconds: tiny batch, 2 steps, results/smoke/
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, median, paired_ratio, write_result  # noqa: E402

TARGETS = {"sampling": 1.0, "training": 1.0}


def ours(batch: int):
    from genforge.diffusion.precondition import NetworkDenoiser
    from genforge.diffusion.schedules import sampling_sigmas, training_sigmas
    from genforge.models.unet import UNet, UNetConfig
    from genforge.sampling.diffusion import generate_samples

    net = UNet(UNetConfig(base_channels=32, channel_mult=(1, 2, 2), num_res_blocks=2, attention_resolutions=(7,),
                          num_heads=4, num_classes=10, dropout=0.0))
    train_sigmas = training_sigmas("cosine", 1000)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4, fused=True)
    g = torch.Generator().manual_seed(0)
    x0, labels = torch.randn(batch, 1, 28, 28, generator=g).clamp(-1, 1), torch.randint(0, 10, (batch,), generator=g)

    def sample(steps: int) -> torch.Tensor:
        net.eval()
        with torch.inference_mode():
            return generate_samples(NetworkDenoiser(net, "eps"), sampling_sigmas(train_sigmas, steps, "ddim"), batch,
                                    (1, 28, 28), labels, sampler="ddim", seed=0)

    def train_step() -> float:
        net.train()
        sigma = train_sigmas[torch.randint(1000, (batch,), generator=g)]
        loss = NetworkDenoiser(net, "eps").loss(x0, sigma, torch.randn(x0.shape, generator=g), labels)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    return net, sample, train_step


def peer(batch: int):
    from diffusers import DDIMScheduler, UNet2DModel

    net = UNet2DModel(sample_size=28, in_channels=1, out_channels=1, block_out_channels=(32, 64, 64),
                      layers_per_block=2, down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
                      up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"), norm_num_groups=8,
                      attention_head_dim=16, num_class_embeds=11)
    sched = DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4, fused=True)
    g = torch.Generator().manual_seed(0)
    x0, labels = torch.randn(batch, 1, 28, 28, generator=g).clamp(-1, 1), torch.randint(0, 10, (batch,), generator=g)

    def sample(steps: int) -> torch.Tensor:
        net.eval()
        sched.set_timesteps(steps)
        x = torch.randn(batch, 1, 28, 28, generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            for t in sched.timesteps:
                eps = net(x, t, class_labels=labels).sample
                x = sched.step(eps, t, x).prev_sample
        return x.clamp(-1, 1)

    def train_step() -> float:
        net.train()
        t = torch.randint(1000, (batch,), generator=g)
        noise = torch.randn(x0.shape, generator=g)
        loss = torch.nn.functional.mse_loss(net(sched.add_noise(x0, noise, t), t, class_labels=labels).sample, noise)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    return net, sample, train_step


def timed(fn, *args) -> float:
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=50, help="DDIM steps when sampling")
    ap.add_argument("--train-steps", type=int, default=5, help="training steps timed per round (median)")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--out-dir", help="results folder (default benchmarks/results, or results/smoke with --smoke)")
    args = ap.parse_args()
    if args.smoke:
        args.rounds, args.batch, args.steps, args.train_steps = 2, 4, 2, 2
    torch.set_num_threads(args.threads)
    sides = {"ours": ours(args.batch), "diffusers": peer(args.batch)}
    params = {k: sum(p.numel() for p in net.parameters()) for k, (net, _, _) in sides.items()}
    for _, sample, train_step in sides.values():  # warm-up
        sample(2)
        train_step()
    raw: dict[str, dict[str, list[float]]] = {k: {"sample_s": [], "train_step_s": []} for k in sides}
    loads = []
    for r in range(args.rounds):
        order = list(sides) if r % 2 == 0 else list(sides)[::-1]
        for name in order:
            _, sample, train_step = sides[name]
            raw[name]["sample_s"].append(timed(sample, args.steps))
            raw[name]["train_step_s"].append(median([timed(train_step) for _ in range(args.train_steps)]))
        loads.append(os.getloadavg()[0])
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(
            f"{k} sample {v['sample_s'][-1]:.2f}s train {v['train_step_s'][-1] * 1e3:.0f}ms" for k, v in raw.items()),
            flush=True)
    images_per_s = {k: [args.batch / s for s in v["sample_s"]] for k, v in raw.items()}
    steps_per_s = {k: [1 / s for s in v["train_step_s"]] for k, v in raw.items()}
    ratios = {"sampling": paired_ratio(images_per_s["ours"], images_per_s["diffusers"]),
              "training": paired_ratio(steps_per_s["ours"], steps_per_s["diffusers"])}
    result: dict[str, Any] = {
        "config": {"batch": args.batch, "ddim_steps": args.steps, "threads": args.threads, "rounds": args.rounds,
                   "train_steps_per_round": args.train_steps, "image": "1x28x28", "classes": 10,
                   "smoke": args.smoke},
        "parameters": params,
        "diffusers_version": __import__("diffusers").__version__,
        "images_per_s": {k: {"median": median(v), "runs": v} for k, v in images_per_s.items()},
        "train_step_ms": {k: {"median": median(v["train_step_s"]) * 1e3, "runs": [s * 1e3 for s in v["train_step_s"]]}
                          for k, v in raw.items()},
        "ratios": ratios,
        "targets": {k: {"target": t, "value": ratios[k]["median"], "met": ratios[k]["median"] >= t}
                    for k, t in TARGETS.items()},
        "loadavg_1min_per_round": loads,
    }
    out_dir = Path(args.out_dir) if args.out_dir else (RESULTS / "smoke" if args.smoke else RESULTS)
    path = write_result("diffusion_speed", result, out_dir)
    print(f"parameters: ours {params['ours']:,}, diffusers {params['diffusers']:,}")
    for k, r in ratios.items():
        print(f"{k}: {r['median']:.2f}x ({r['min']:.2f}-{r['max']:.2f}) vs diffusers")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
