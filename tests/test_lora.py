"""LoRA adapters (``models.lora``, ``[adapter]`` recipes, ``--model base+adapter``).

Properties: a fresh adapter leaves the model's outputs exactly as they were (B = 0); folding a trained
adapter into the weights gives the same logits as the unfolded model; an adapter run trains only the
adapter (the base's weights stay bit for bit), saves the adapter alone (a small file that records its
base), lowers the loss on the new text, and resumes exactly; loading 'base+adapter' equals loading the
adapter's run folder; an adapter of another base, a rank larger than a layer and an unknown target are
each one clear error.
"""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from genforge.checkpoint import list_checkpoints, read_meta
from genforge.errors import CheckpointError, ConfigError
from genforge.models import build_model
from genforge.models.lora import LoRAConfig, adapter_tensors, add_lora, merge_lora
from genforge.train.fit import fit

TINY = {"vocab_size": 30, "n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 32, "dropout": 0.0}


def test_a_fresh_adapter_changes_nothing_and_folding_keeps_the_logits():
    torch.manual_seed(0)
    base = build_model("transformer", TINY).eval()
    ids = torch.randint(0, 30, (3, 20))
    want = base(ids)
    model = copy.deepcopy(base)
    names = add_lora(model, LoRAConfig(rank=4, alpha=8, targets=("c_attn", "c_proj", "c_fc", "lm_head")))
    assert len(names) == 2 * 4 + 1 and torch.equal(model(ids), want)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == set(adapter_tensors(model))
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("lora_B"):
                p.normal_(0, 0.05)
    adapted = model(ids)
    assert (adapted - want).abs().max() > 1e-3
    merged = merge_lora(model)
    assert torch.allclose(merged(ids), adapted, atol=1e-4)
    assert torch.equal(base.transformer.wte.weight, merged.transformer.wte.weight)  # the tied table kept


def test_bad_adapter_configs_are_one_line():
    model = build_model("transformer", TINY)
    with pytest.raises(ConfigError, match=r"adapter.rank=33 is larger than layer transformer.h.0.attn.c_attn "
                                          r"\(32 -> 96\) allows: at most 32"):
        add_lora(model, LoRAConfig(rank=33))
    with pytest.raises(ConfigError, match="'q_proj' names no Linear layer of this model"):
        add_lora(build_model("transformer", TINY), LoRAConfig(targets=("q_proj",)))
    with pytest.raises(ConfigError, match="adapter.kind='dora' is unknown"):
        LoRAConfig.from_dict({"kind": "dora"})



def test_an_adapter_run_trains_saves_and_loads_the_adapter_alone(tmp_path: Path, make_config):
    import genforge
    from genforge.config import RunConfig

    base_run = fit(make_config(max_steps=40, eval_interval=40)).out_dir
    base_ckpt = list_checkpoints(base_run)[-1]
    before = load_file(str(base_ckpt / "model.safetensors"))
    other = tmp_path / "other.txt"
    other.write_text("the cat sat on the mat and the dog sat on the log. " * 400)

    def recipe(name: str, steps: int, **adapter) -> RunConfig:
        d = make_config(max_steps=steps, eval_interval=10).to_dict()
        d["data"]["corpus"] = str(other)
        d["train"].update(out_dir=str(tmp_path / name), init_from=str(base_run), keep_checkpoints=5, lr=1e-2,
                          min_lr=1e-2, log_interval=1)
        d["adapter"] = {"kind": "lora", "rank": 4, "alpha": 8, **adapter,
                        "targets": ["c_attn", "c_proj", "c_fc", "lm_head"]}  # a 40-step base needs its head adapted
        return RunConfig.from_dict(d)

    run = fit(recipe("lora", 30))
    ckpt = run.checkpoint
    saved = load_file(str(ckpt / "model.safetensors"))
    assert saved and all(".lora_" in k for k in saved)
    assert (ckpt / "model.safetensors").stat().st_size < 0.3 * (base_ckpt / "model.safetensors").stat().st_size
    info = read_meta(ckpt)["adapter"]
    assert info["base"] == str(base_run) and info["rank"] == 4 and len(info["base_sha256"]) == 64
    after = load_file(str(base_ckpt / "model.safetensors"))
    assert all(torch.equal(before[k], after[k]) for k in before)  # the base never moved
    vals = [r["val_loss"] for r in run.history if "val_loss" in r]
    assert vals[-1] < vals[0] - 0.2, vals  # it learned the new text
    # loading: the run folder, or base+adapter, give the same (folded) model; both differ from the base
    a, b = genforge.load(str(tmp_path / "lora")), genforge.load(f"{base_run}+{tmp_path / 'lora'}")
    plain = genforge.load(str(base_run))
    assert a.perplexity("the cat sat on the mat") == pytest.approx(b.perplexity("the cat sat on the mat"), rel=1e-5)
    assert a.perplexity("the cat sat on the mat") < plain.perplexity("the cat sat on the mat")
    # resume equals the uninterrupted run
    fit(recipe("half", 30), stop_after=15)
    resumed = fit(recipe("half", 30), resume=True)
    x = load_file(str(resumed.checkpoint / "model.safetensors"))
    assert all(torch.equal(x[k], saved[k]) for k in saved)
    # an adapter of another base is refused with both names
    other_base = fit(make_config(max_steps=2, eval_interval=2, seed=9, train={"out_dir": str(tmp_path / "b2")}))
    with pytest.raises(CheckpointError, match=r"adapter .*lora was trained for the base model .* not for .*b2"):
        genforge.load(f"{other_base.out_dir}+{tmp_path / 'lora'}")
    with pytest.raises(ConfigError, match="set train.init_from"):
        d = recipe("x", 2).to_dict()
        d["train"]["init_from"] = ""
        fit(RunConfig.from_dict(d))
