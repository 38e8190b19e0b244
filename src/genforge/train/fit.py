"""The one training loop: ``fit(RunConfig)``, for every family.

Written out, no callbacks: set the learning rate -> for each phase of the task: micro-steps (DDP
``no_sync`` on all but the last) -> clip -> NaN guard -> step; log; now and then evaluate and
checkpoint. The math (model, batches, losses, evaluation) is the task's (``train/tasks``), chosen by
the recipe's ``[task] kind``. Everything that decides which numbers come out (weights, every
optimizer's moments, the task's data sampler and EMA, RNG states) is checkpointed, so ``--resume``
continues exactly where the run stopped.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoint import (
    list_checkpoints,
    load_tensors,
    load_weights,
    model_tensors,
    prune_checkpoints,
    read_meta,
    save_checkpoint,
)
from ..config import RunConfig
from ..errors import CheckpointError, ConfigError, GenforgeError
from ..registry import TASKS
from ..safety.model_card import CARD_FILE, card_markdown
from . import runtime as rtm
from .metrics import MetricsLog, plot_losses
from .optim import lr_at, set_lr
from .tasks import Task

MAX_BAD_STEPS = 10  # consecutive non-finite losses before the run stops
RESUME_FIXED = ("model", "codec", "data", "task", "adapter")  # sections a resumed run may not change


@dataclass
class FitResult:
    out_dir: Path
    checkpoint: Path | None
    step: int
    val_loss: float
    history: list[dict[str, Any]] = field(default_factory=list)


def make_task(cfg: RunConfig, rt: rtm.Runtime) -> Task:
    """The task the recipe names (``[task] kind``; ``lm`` when absent)."""
    return TASKS.get(cfg.task.get("kind", "lm"), "task.kind")(cfg, rt)


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


def fit(cfg: RunConfig, resume: bool = False, stop_after: int | None = None) -> FitResult:
    """Train per ``cfg``. ``stop_after`` ends the run early (with a checkpoint) at that step."""
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
        if meta is not None:
            saved = dict(meta["config"])
            saved.setdefault("task", {"kind": "lm"})  # written before tasks had a section
            saved.setdefault("adapter", {})  # written before adapters had a section
            for section in RESUME_FIXED:
                if saved.get(section) != cfg.to_dict()[section]:
                    raise ConfigError(f"--resume with a different [{section}] than {ckpts[-1]} was trained "
                                      "with; only [train] settings may change on resume")
        task = make_task(cfg, rt)
        task.setup(out, meta)
        torch.manual_seed(tc.seed)
        model = task.build_model().to(rt.device)
        opts = task.optimizers(model, rt.device)
        phases = task.phases()
        micro = tc.batch_size // (rt.world_size * tc.grad_accum)
        if micro * rt.world_size * tc.grad_accum != tc.batch_size:
            raise ConfigError(f"train.batch_size={tc.batch_size} must divide by grad_accum ({tc.grad_accum}) "
                              f"x processes ({rt.world_size})")
        step, elapsed, bad_total = 0, 0.0, 0
        if meta is not None:
            restore = getattr(task, "restore_weights", None) or load_weights  # an adapter run stores its own
            restore(model, load_tensors(ckpts[-1], "model.safetensors", meta), ckpts[-1])
            trainer = load_tensors(ckpts[-1], "trainer.safetensors", meta)
            state = meta["trainer"]
            _restore_optimizer(opts, {k: v.to(rt.device) for k, v in trainer.items()}, state["param_groups"])
            task.load_state(trainer, state)
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
        # fp16 needs a loss scaler; TrainConfig refuses fp16 with more than one optimizer per phase
        scaler = torch.amp.GradScaler(rt.device.type) if rt.amp_dtype == torch.float16 else None
        # each phase clips the parameters its optimizers step, in the model's own parameter order
        owned = [{id(p) for j in ph.optimizers for g in opts[j].param_groups for p in g["params"]} for ph in phases]
        clip_sets = [[p for p in raw.parameters() if id(p) in ids] for ids in owned]

        log = MetricsLog(out / "metrics.jsonl", resume_step=step if meta else None) if rt.is_main else None
        history: list[dict[str, Any]] = log.read() if log else []
        unit = task.throughput_unit
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
            task_tensors, task_info = task.state()
            trainer = dict(opt_tensors, **task_tensors, **{"rng.torch": torch.get_rng_state()})
            if rt.device.type == "cuda":
                trainer["rng.cuda"] = torch.cuda.get_rng_state(rt.device)
            meta_out = {
                **task.meta(), "config": cfg.to_dict(), "step": step, "metrics": metrics,
                "parameters": sum(p.numel() for p in raw.parameters()),
                "trainer": {"param_groups": groups, **task_info, "elapsed_s": elapsed,
                            "nonfinite_steps": bad_total, "world_size": rt.world_size,
                            "device": str(rt.device), "precision": str(rt.amp_dtype or "fp32")},
            }
            card = card_markdown(meta_out, out.name).encode("utf-8")  # every checkpoint carries its model card
            weights = getattr(task, "saved_weights", None) or model_tensors  # an adapter run: the adapter alone
            path = save_checkpoint(out / "checkpoints" / f"step-{step:08d}", weights(raw), meta_out, trainer,
                                   extra_files={**(task.checkpoint_files() or {}), CARD_FILE: card})
            prune_checkpoints(out, tc.keep_checkpoints)
            return path

        model.train()
        t_log, steps_since_log = time.perf_counter(), 0
        while step < end:
            t0 = time.perf_counter()
            lr = lr_at(step, tc)
            set_lr(opts, lr, tc)
            batch = tuple(t.to(rt.device, non_blocking=True) for t in task.next_batch(rt.rank, rt.world_size))
            losses: list[float] = []
            norms: list[float] = []
            for phase, params in zip(phases, clip_sets):
                phase_opts = [opts[j] for j in phase.optimizers]
                loss_sum = torch.zeros((), device=rt.device)
                for m in range(tc.grad_accum):
                    part = tuple(t[m * micro:(m + 1) * micro] for t in batch)
                    sync = m == tc.grad_accum - 1 or rt.world_size == 1
                    ctx = model.no_sync() if not sync else _nullctx()
                    with ctx, rt.autocast():
                        loss = phase.loss(model, part) / tc.grad_accum
                    (scaler.scale(loss) if scaler else loss).backward()
                    loss_sum += loss.detach()
                if scaler:
                    scaler.unscale_(phase_opts[0])
                gnorm = nn.utils.clip_grad_norm_(params, tc.grad_clip if tc.grad_clip > 0 else float("inf"))
                losses.append(float(rtm.mean_across(loss_sum, rt)))
                norms.append(float(gnorm))
                if not (math.isfinite(losses[-1]) and math.isfinite(norms[-1])):
                    break
                if scaler:
                    scaler.step(phase_opts[0])
                    scaler.update()
                else:
                    for opt in phase_opts:
                        opt.step()
                for opt in opts:  # also clears what this phase's loss left on other phases' parameters
                    opt.zero_grad(set_to_none=True)
            if not (math.isfinite(losses[-1]) and math.isfinite(norms[-1])):
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
            task.after_step(raw)
            step += 1
            elapsed += time.perf_counter() - t0
            steps_since_log += 1
            if bar:
                bar.update(1)
                bar.set_postfix(loss=f"{losses[0]:.4f}", lr=f"{lr:.2e}")
            if log and (step % tc.log_interval == 0 or step == end):
                now = time.perf_counter()
                rec = {"step": step, "loss": losses[0], "lr": lr, "grad_norm": norms[0],
                       f"{unit}_per_s": steps_since_log * task.items_per_step() / max(now - t_log, 1e-9),
                       "elapsed_s": round(elapsed, 3)}
                for i, (lv, nv) in enumerate(zip(losses[1:], norms[1:]), start=1):
                    rec[f"loss_{i}"], rec[f"grad_norm_{i}"] = lv, nv
                log.write(rec)
                history.append(rec)
                t_log, steps_since_log = now, 0
            if step % tc.eval_interval == 0 or step == end:
                metrics = task.evaluate(raw)
                val_loss = metrics.get("val_loss", float("nan"))
                rec = {"step": step, **metrics, "elapsed_s": round(elapsed, 3)}
                if log:
                    log.write(rec)
                    history.append(rec)
                    plot_losses(history, out / "loss.png", title=f"{out.name}: {cfg.model.get('kind', task.kind)}")
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
