"""Fine-tuning (``train.init_from``) really starts from the base model's weights."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from genforge.checkpoint import load_tensors, load_weights, read_meta
from genforge.codecs import codec_from_dict
from genforge.data.loader import WindowSampler
from genforge.data.shards import prepare_shards
from genforge.models import build_model
from genforge.paths import data_home
from genforge.train.fit import fit
from genforge.train.tasks.lm import lm_loss


def _first_logged_loss(run: Path) -> float:
    for line in (run / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec["step"] == 1 and "loss" in rec:
            return rec["loss"]
    raise AssertionError("step 1 was not logged")


def test_the_first_step_loss_is_the_base_models_loss_on_that_batch(make_config, corpus: Path, tmp_path: Path):
    base = fit(make_config(max_steps=80, eval_interval=80, out_dir=str(tmp_path / "base"))).checkpoint
    cfg = make_config(max_steps=1, log_interval=1, eval_interval=1, init_from=str(base),
                      out_dir=str(tmp_path / "tuned"), seed=99)
    fit(cfg)
    first = _first_logged_loss(Path(cfg.train.out_dir))  # the loss before the first update

    meta = read_meta(base)
    codec = codec_from_dict(meta["codec"])
    shards = prepare_shards(cfg.data.corpus, codec, data_home() / "shards", cfg.data.val_fraction)
    block, batch = meta["model"]["block_size"], cfg.train.batch_size
    x, y = WindowSampler(shards.train, block, batch, cfg.train.seed, split="train").next_batch(0, 1)
    fields = {k: v for k, v in meta["model"].items() if k != "kind"}
    with torch.no_grad():
        model = build_model(meta["model"]["kind"], fields)
        load_weights(model, load_tensors(base, "model.safetensors", meta), base)
        base_loss = float(lm_loss(model, x, y))
        torch.manual_seed(cfg.train.seed)
        random_loss = float(lm_loss(build_model(meta["model"]["kind"], fields), x, y))
    assert first == pytest.approx(base_loss, rel=1e-6)
    assert first < random_loss - 0.5, (first, random_loss)  # far below an untrained model's
    assert read_meta(Path(cfg.train.out_dir) / "checkpoints" / "step-00000001")["init_from"] == str(base)
