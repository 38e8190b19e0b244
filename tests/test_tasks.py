"""fit() is modality-free: a task with two optimizers, two phases and EMA weights trains and resumes
exactly; the recipe's [task] kind picks the task, and unknown kinds are one clear line."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from genforge.checkpoint import list_checkpoints, read_meta
from genforge.config import RunConfig
from genforge.errors import ConfigError
from genforge.registry import TASKS
from genforge.train.ema import EMA
from genforge.train.fit import fit
from genforge.train.tasks import Phase


class TwoNets(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 1)


class TwoOptimizerTask:
    """A GAN-shaped toy: phase 0 fits ``a`` (SGD with momentum), phase 1 fits ``b`` on ``a``'s output
    (AdamW); noise from the global RNG in the loss, batches from the task's own generator, EMA weights."""

    kind = "toy-two-optimizers"
    throughput_unit = "samples"

    def __init__(self, cfg: RunConfig, rt) -> None:
        self.cfg = cfg
        self.gen = torch.Generator().manual_seed(cfg.train.seed)
        self.target = torch.randn(4, 1, generator=torch.Generator().manual_seed(0))

    def setup(self, out: Path, resume_meta) -> None:
        out.mkdir(parents=True, exist_ok=True)

    def build_model(self) -> nn.Module:
        model = TwoNets()
        self.ema = EMA(model, 0.9)
        return model

    def optimizers(self, model, device):
        return [torch.optim.SGD(model.a.parameters(), lr=self.cfg.train.lr, momentum=0.9),
                torch.optim.AdamW(model.b.parameters(), lr=self.cfg.train.lr)]

    def phases(self):
        def loss_a(model, batch):
            x, y = batch
            noisy = x + 0.01 * torch.randn(x.shape)  # uses the global RNG, which resume restores
            return (model.a(noisy).sum(-1, keepdim=True) - y).pow(2).mean()

        def loss_b(model, batch):
            x, y = batch
            return (model.b(model.a(x).detach()) - y).pow(2).mean()

        return [Phase((0,), loss_a), Phase((1,), loss_b)]

    def next_batch(self, rank, world_size):
        x = torch.randn(self.cfg.train.batch_size, 4, generator=self.gen)
        return x, x @ self.target

    def items_per_step(self) -> int:
        return self.cfg.train.batch_size

    def after_step(self, model) -> None:
        self.ema.update(model)

    def evaluate(self, model):
        x = torch.randn(64, 4, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            return {"val_loss": float((model.b(model.a(x)) - x @ self.target).pow(2).mean())}

    def state(self):
        return {"data.rng": self.gen.get_state(), **self.ema.state()}, {}

    def load_state(self, tensors, info) -> None:
        self.gen.set_state(tensors["data.rng"])
        self.ema.load_state(tensors)

    def checkpoint_files(self):
        return {}

    def meta(self):
        return {"model": {"kind": "two-nets"}, "task": self.kind, "pipeline": "none"}


@pytest.fixture(autouse=True)
def _registered():
    TASKS.register(TwoOptimizerTask.kind, TwoOptimizerTask)
    yield


def recipe(out: Path, **train) -> RunConfig:
    return RunConfig.from_dict({"task": {"kind": TwoOptimizerTask.kind}, "train": {
        "out_dir": str(out), "max_steps": 12, "batch_size": 8, "grad_accum": 2, "eval_interval": 4, "log_interval": 1,
        "warmup_steps": 2, "lr": 0.05, "min_lr": 0.005, "progress": False, "precision": "fp32", "device": "cpu",
        "keep_checkpoints": 5, **train}})


def logged(run: Path) -> list[dict]:
    return [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]


def test_two_optimizers_and_ema_resume_bit_for_bit(tmp_path: Path) -> None:
    straight = fit(recipe(tmp_path / "straight"))
    assert straight.step == 12
    rec = logged(tmp_path / "straight")
    assert {"loss", "loss_1", "grad_norm_1", "samples_per_s"} <= set(rec[0])
    assert rec[0]["loss"] != rec[0]["loss_1"]  # two phases, two losses
    first = recipe(tmp_path / "resumed")
    fit(first, stop_after=5)
    assert [p.name for p in list_checkpoints(tmp_path / "resumed")] == ["step-00000004", "step-00000005"]
    fit(first, resume=True)
    def by_step(run: Path) -> dict:
        keep = ("loss", "loss_1", "lr", "grad_norm", "grad_norm_1", "val_loss")
        return {(r["step"], "val" if "val_loss" in r else "train"): {k: r[k] for k in keep if k in r}
                for r in logged(run) if "val_loss" in r or "loss" in r}

    got, want = by_step(tmp_path / "resumed"), by_step(tmp_path / "straight")
    del got[(5, "val")]  # the early stop's own evaluation
    assert got == want  # every logged number, bit for bit
    a = load_file(list_checkpoints(tmp_path / "straight")[-1] / "trainer.safetensors")
    b = load_file(list_checkpoints(tmp_path / "resumed")[-1] / "trainer.safetensors")
    assert a.keys() == b.keys()
    assert {k.split(".")[0] for k in a} >= {"opt", "opt1", "ema", "data", "rng"}  # both optimizers and the EMA
    for k in a:
        assert torch.equal(a[k], b[k]), k
    wa = load_file(list_checkpoints(tmp_path / "straight")[-1] / "model.safetensors")
    wb = load_file(list_checkpoints(tmp_path / "resumed")[-1] / "model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not torch.equal(a["ema.a.weight"], wa["a.weight"])  # the EMA really lags the weights
    meta = read_meta(list_checkpoints(tmp_path / "resumed")[-1])
    assert meta["task"] == TwoOptimizerTask.kind and meta["config"]["task"]["kind"] == TwoOptimizerTask.kind


def test_resuming_a_run_with_another_task_is_refused(tmp_path: Path) -> None:
    fit(recipe(tmp_path / "run"), stop_after=4)
    other = RunConfig.from_dict({**recipe(tmp_path / "run").to_dict(), "task": {"kind": "lm"}})
    with pytest.raises(ConfigError, match=r"different \[task\]"):
        fit(other, resume=True)


def test_an_unknown_task_kind_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="task.kind='gan9' is unknown: .*'lm'"):
        RunConfig.from_dict({"task": {"kind": "gan9"}})
    with pytest.raises(ConfigError, match=r"\[task\] must be a table"):
        RunConfig.from_dict({"task": "lm"})


def test_a_recipe_without_a_task_section_is_lm() -> None:
    assert RunConfig.from_dict({}).task == {"kind": "lm"}
