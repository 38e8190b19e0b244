"""The one training loop: ``fit(RunConfig)``.

Written out, no callbacks: set the learning rate -> micro-steps (DDP ``no_sync`` on all but the
last) -> clip -> step -> log; now and then evaluate and checkpoint. Everything that decides which
numbers come out (weights, optimizer moments, data sampler, RNG) is checkpointed, so ``--resume``
continues exactly where the run stopped.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..atomic import atomic_write_text
from ..config import RunConfig
from ..errors import CheckpointError, ConfigError, GenforgeError
from . import runtime as rtm
from .checkpoint import (
    list_checkpoints,
    load_tensors,
    load_weights,
    model_tensors,
    prune_checkpoints,
    read_meta,
    save_checkpoint,
)
from .metrics import MetricsLog, plot_losses
from .optim import lr_at, make_optimizers, set_lr

MAX_BAD_STEPS = 10  # consecutive non-finite losses before the run stops


@dataclass
class FitResult:
    out_dir: Path
    checkpoint: Path | None
    step: int
    val_loss: float
    history: list[dict[str, Any]] = field(default_factory=list)


def lm_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy (nats per token); logits upcast so bf16 never reaches the softmax."""
    logits = model(x)
    return F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.view(-1))


def _build_codec(cfg: RunConfig):
    from ..codecs.bpe import BPECodec
    from ..codecs.char import CharCodec
    from ..data.corpus import iter_corpus, read_corpus

    if cfg.codec.kind == "char":
        return CharCodec.from_text(read_corpus(cfg.data.corpus), unknown=cfg.codec.unknown or None)
    return BPECodec.train(iter_corpus(cfg.data.corpus), vocab_size=cfg.codec.vocab_size)


FINE_TUNABLE = ("dropout",)  # model fields a fine-tuning recipe may change from its base model


def _config_defaults(kind: str) -> dict[str, Any]:
    from ..models.rnn import RNNConfig
    from ..models.transformer import GPTConfig

    cls = {"transformer": GPTConfig, "rnn": RNNConfig}.get(kind)
    return {f.name: f.default for f in dataclasses.fields(cls)} if cls else {}


def _model_spec(cfg: RunConfig, vocab_size: int, base: dict[str, Any] | None) -> tuple[str, dict[str, Any]]:
    """The model kind and config fields to build: from the recipe, or from the base model when fine-tuning."""
    fields = {k: v for k, v in cfg.model.items() if k != "kind"}
    if base is not None:
        base_fields = {k: v for k, v in base["model"].items() if k != "kind"}
        defaults = _config_defaults(base["model"]["kind"])  # fields older models were saved without
        for k, v in fields.items():
            was = base_fields.get(k, defaults.get(k))
            if k not in FINE_TUNABLE and was != v:
                raise ConfigError(f"model.{k}={v!r} differs from train.init_from's {was!r}: when "
                                  f"fine-tuning only {', '.join(FINE_TUNABLE)} may change; remove model.{k}")
        return base["model"]["kind"], {**base_fields, **fields}
    if "vocab_size" in fields and fields["vocab_size"] != vocab_size:
        raise ConfigError(f"model.vocab_size={fields['vocab_size']} but the codec has {vocab_size} tokens: "
                          "remove model.vocab_size, it is set from the codec")
    fields["vocab_size"] = vocab_size
    return cfg.model["kind"], fields


def _opt_prefix(j: int) -> str:
    """Checkpoint tensor prefix of optimizer j: ``opt.`` for the first (as single-optimizer runs
    always wrote), ``opt1.`` ... after it."""
    return "opt." if j == 0 else f"opt{j}."


def _optimizer_tensors(opts: list[torch.optim.Optimizer]) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """Every optimizer's moments as named tensors (see ``_opt_prefix``) and all their parameter
    groups, in order, as one list."""
    tensors, groups = {}, []
    for j, opt in enumerate(opts):
        sd = opt.state_dict()
        tensors.update({f"{_opt_prefix(j)}{i}.{k}": v for i, s in sd["state"].items() for k, v in s.items()})
        groups += sd["param_groups"]
    return tensors, groups


def _restore_optimizer(opts: list[torch.optim.Optimizer], tensors: dict[str, torch.Tensor],
                       groups: list[dict]) -> None:
    if len(groups) != sum(len(opt.param_groups) for opt in opts):
        raise CheckpointError(f"the checkpoint's optimizer has {len(groups)} parameter groups, this run's "
                              f"has {sum(len(o.param_groups) for o in opts)}: resume with the run's own "
                              "train.optimizer")
    for j, opt in enumerate(opts):
        state: dict[int, dict[str, torch.Tensor]] = {}
        for name, t in tensors.items():
            if name.startswith(_opt_prefix(j)):
                _, i, k = name.split(".", 2)
                state.setdefault(int(i), {})[k] = t
        n = len(opt.param_groups)
        opt.load_state_dict({"state": state, "param_groups": groups[:n]})
        groups = groups[n:]


@torch.no_grad()
def evaluate(model: nn.Module, tokens, block: int, batch: int, steps: int, seed: int,
             rt: rtm.Runtime) -> float:
    """Mean loss over ``steps`` fixed random batches (the same batches at every evaluation)."""
    from ..data.loader import WindowSampler

    sampler = WindowSampler(tokens, block, batch, seed, split="val")
    was_training = model.training
    model.eval()
    total = torch.zeros((), device=rt.device)
    for _ in range(steps):
        x, y = sampler.next_batch(rt.rank, rt.world_size)
        with rt.autocast():
            total += lm_loss(model, x.to(rt.device), y.to(rt.device))
    model.train(was_training)
    return float(rtm.mean_across(total / steps, rt))


def fit(cfg: RunConfig, resume: bool = False, stop_after: int | None = None) -> FitResult:
    """Train per ``cfg``. ``stop_after`` ends the run early (with a checkpoint) at that step."""
    from ..codecs import codec_from_dict
    from ..data.loader import WindowSampler
    from ..data.shards import prepare_shards
    from ..models import build_model
    from ..paths import data_home

    tc = cfg.train
    rt = rtm.setup(tc)
    if rt.is_main:
        print(f"genforge: {rt.precision_note}", flush=True)
    out = Path(tc.out_dir)
    try:
        ckpts = list_checkpoints(out)
        if resume and not ckpts:
            raise GenforgeError(f"nothing to resume: {out} has no complete checkpoint; drop --resume to start")
        if not resume and ckpts:
            raise GenforgeError(f"{out} already holds checkpoints: pass --resume to continue, "
                                "or choose another --train.out_dir")
        meta = read_meta(ckpts[-1]) if resume else None
        base_path = base = None
        if tc.init_from and meta is None:  # fine-tuning: weights and codec come from the base model
            from ..pipelines.registry import resolve_model

            base_path = resolve_model(tc.init_from)
            base = read_meta(base_path)
        if meta is not None:
            for section in ("model", "codec", "data"):
                if meta["config"][section] != cfg.to_dict()[section]:
                    raise ConfigError(f"--resume with a different [{section}] than {ckpts[-1]} was trained "
                                      "with; only [train] settings may change on resume")

        # encode: the codec is built once (rank 0), shared through a file, and travels in checkpoints
        codec_file = out / "codec.json"
        if rt.is_main:
            out.mkdir(parents=True, exist_ok=True)
            source = meta or base
            codec = codec_from_dict(source["codec"]) if source else _build_codec(cfg)
            atomic_write_text(codec_file, json.dumps(codec.to_dict()))
            shards = prepare_shards(cfg.data.corpus, codec, data_home() / "shards", cfg.data.val_fraction)
        rtm.barrier(rt)
        if not rt.is_main:
            codec = codec_from_dict(json.loads(codec_file.read_text()))
            shards = prepare_shards(cfg.data.corpus, codec, data_home() / "shards", cfg.data.val_fraction)

        torch.manual_seed(tc.seed)
        kind, fields = _model_spec(cfg, codec.vocab_size, meta or base)
        model = build_model(kind, fields)
        if base is not None:
            load_weights(model, load_tensors(base_path, "model.safetensors", base), base_path)
        model = model.to(rt.device)
        block = model.config.block_size
        opts = make_optimizers(model, tc, rt.device)
        sampler = WindowSampler(shards.train, block, tc.batch_size, tc.seed, split="train")
        micro = tc.batch_size // (rt.world_size * tc.grad_accum)
        if micro * rt.world_size * tc.grad_accum != tc.batch_size:
            raise ConfigError(f"train.batch_size={tc.batch_size} must divide by grad_accum ({tc.grad_accum}) "
                              f"x processes ({rt.world_size})")
        step, elapsed, bad_total = 0, 0.0, 0
        if meta is not None:
            load_weights(model, load_tensors(ckpts[-1], "model.safetensors", meta), ckpts[-1])
            trainer = load_tensors(ckpts[-1], "trainer.safetensors", meta)
            state = meta["trainer"]
            _restore_optimizer(opts, {k: v.to(rt.device) for k, v in trainer.items()}, state["param_groups"])
            sampler.load_state_dict({"rng": trainer["rng.data"], "batches": state["batches"]})
            torch.set_rng_state(trainer["rng.torch"])
            if rt.device.type == "cuda" and "rng.cuda" in trainer:
                torch.cuda.set_rng_state(trainer["rng.cuda"], rt.device)
            step, elapsed, bad_total = meta["step"], state["elapsed_s"], state["nonfinite_steps"]

        raw = model
        if rt.world_size > 1:
            model = nn.parallel.DistributedDataParallel(model, device_ids=[rt.device.index]
                                                        if rt.device.type == "cuda" else None)
        if tc.compile:
            model = torch.compile(model)
        scaler = torch.amp.GradScaler(rt.device.type) if rt.amp_dtype == torch.float16 else None

        log = MetricsLog(out / "metrics.jsonl", resume_step=step if meta else None) if rt.is_main else None
        history: list[dict[str, Any]] = log.read() if log else []
        tokens_per_step = tc.batch_size * block
        bad_run, val_loss, last_ckpt = 0, float("nan"), None
        bar = None
        if rt.is_main and tc.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=tc.max_steps, initial=step, unit="step", dynamic_ncols=True, desc="train")
        end = min(tc.max_steps, stop_after) if stop_after else tc.max_steps

        def checkpoint(step: int, metrics: dict[str, float]) -> Path | None:
            if not rt.is_main:
                return None
            opt_tensors, groups = _optimizer_tensors(opts)
            trainer = dict(opt_tensors, **{"rng.torch": torch.get_rng_state(),
                                            "rng.data": sampler.state_dict()["rng"]})
            if rt.device.type == "cuda":
                trainer["rng.cuda"] = torch.cuda.get_rng_state(rt.device)
            meta_out = {
                "model": {"kind": kind, **fields}, "init_from": tc.init_from or None,
                "codec": codec.to_dict(), "config": cfg.to_dict(), "step": step, "metrics": metrics,
                "parameters": raw.num_parameters(),
                "trainer": {"param_groups": groups, "batches": sampler.batches, "elapsed_s": elapsed,
                            "nonfinite_steps": bad_total, "world_size": rt.world_size,
                            "device": str(rt.device), "precision": str(rt.amp_dtype or "fp32")},
            }
            path = save_checkpoint(out / "checkpoints" / f"step-{step:08d}", model_tensors(raw), meta_out, trainer)
            prune_checkpoints(out, tc.keep_checkpoints)
            return path

        model.train()
        t_log, steps_since_log = time.perf_counter(), 0
        while step < end:
            t0 = time.perf_counter()
            lr = lr_at(step, tc)
            set_lr(opts, lr, tc)
            x, y = sampler.next_batch(rt.rank, rt.world_size)
            x, y = x.to(rt.device, non_blocking=True), y.to(rt.device, non_blocking=True)
            loss_sum = torch.zeros((), device=rt.device)
            for m in range(tc.grad_accum):
                xs, ys = x[m * micro:(m + 1) * micro], y[m * micro:(m + 1) * micro]
                sync = m == tc.grad_accum - 1 or rt.world_size == 1
                ctx = model.no_sync() if not sync else _nullctx()
                with ctx, rt.autocast():
                    loss = lm_loss(model, xs, ys) / tc.grad_accum
                (scaler.scale(loss) if scaler else loss).backward()
                loss_sum += loss.detach()
            if scaler:
                scaler.unscale_(opts[0])  # fp16 runs have one optimizer (TrainConfig checks)
            gnorm = nn.utils.clip_grad_norm_(raw.parameters(), tc.grad_clip if tc.grad_clip > 0 else float("inf"))
            loss_val = float(rtm.mean_across(loss_sum, rt))
            if not (math.isfinite(loss_val) and math.isfinite(float(gnorm))):
                bad_run += 1
                bad_total += 1
                for opt in opts:
                    opt.zero_grad(set_to_none=True)
                if scaler:
                    scaler.update()
                if bad_run >= MAX_BAD_STEPS:
                    raise GenforgeError(f"loss was NaN/inf for {bad_run} steps in a row at step {step}: "
                                        "lower train.lr or use train.precision='fp32'; the last good "
                                        "checkpoint is kept")
                continue
            bad_run = 0
            if scaler:
                scaler.step(opts[0])
                scaler.update()
            else:
                for opt in opts:
                    opt.step()
            for opt in opts:
                opt.zero_grad(set_to_none=True)
            step += 1
            elapsed += time.perf_counter() - t0
            steps_since_log += 1
            if bar:
                bar.update(1)
                bar.set_postfix(loss=f"{loss_val:.4f}", lr=f"{lr:.2e}")
            if log and (step % tc.log_interval == 0 or step == end):
                now = time.perf_counter()
                rec = {"step": step, "loss": loss_val, "lr": lr, "grad_norm": float(gnorm),
                       "tokens_per_s": steps_since_log * tokens_per_step / max(now - t_log, 1e-9),
                       "elapsed_s": round(elapsed, 3)}
                log.write(rec)
                history.append(rec)
                t_log, steps_since_log = now, 0
            if step % tc.eval_interval == 0 or step == end:
                val_loss = evaluate(raw, shards.val, block, tc.batch_size, tc.eval_steps, tc.seed + 1, rt)
                rec = {"step": step, "val_loss": val_loss, "val_bits_per_token": val_loss / math.log(2),
                       "elapsed_s": round(elapsed, 3)}
                # bits per character makes char and BPE models comparable (corpus-wide chars/token)
                cpt = shards.meta.get("chars", 0) / max(1, shards.meta.get("total_tokens", 0))
                if cpt:
                    rec["val_bits_per_char"] = val_loss / math.log(2) / cpt
                if log:
                    log.write(rec)
                    history.append(rec)
                    plot_losses(history, out / "loss.png", title=f"{out.name}: {cfg.model['kind']}")
                if bar:
                    bar.write(f"step {step}: val loss {val_loss:.4f} ({val_loss / math.log(2):.3f} bits/token)")
                last_ckpt = checkpoint(step, {"val_loss": val_loss})
                rtm.barrier(rt)
        if bar:
            bar.close()
        return FitResult(out, last_ckpt or (list_checkpoints(out) or [None])[-1], step, val_loss, history)
    finally:
        rtm.teardown()


class _nullctx:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
