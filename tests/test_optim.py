"""Optimizers and the learning-rate schedule: the Muon/AdamW split, lr scaling, warmup + cosine."""
from __future__ import annotations

import pytest
import torch

from genforge.config import TrainConfig
from genforge.errors import ConfigError
from genforge.models.transformer import GPT, GPTConfig
from genforge.train.optim import lr_at, make_optimizers, set_lr


# ------------------------------------------------------------------------------- lr schedule
@pytest.mark.parametrize("warmup,max_steps", [(0, 50), (1, 10), (10, 100), (37, 200), (50, 51)])
def test_lr_schedule_warmup_then_cosine(warmup: int, max_steps: int) -> None:
    tc = TrainConfig(lr=3e-3, min_lr=2e-4, warmup_steps=warmup, max_steps=max_steps)
    lrs = [lr_at(s, tc) for s in range(max_steps + 1)]
    assert all(tc.min_lr <= x <= tc.lr for x in lrs[warmup:])
    if warmup:
        rise = [lrs[i + 1] - lrs[i] for i in range(warmup)]
        assert all(r > 0 for r in rise)
        assert max(rise) - min(rise) < 1e-12  # linear
        assert lrs[0] < tc.lr / warmup + 1e-12  # starts near zero
    assert lrs[warmup] == pytest.approx(tc.lr, rel=1e-12)  # peak at the end of warmup
    assert max(lrs) == pytest.approx(tc.lr, rel=1e-12)
    after = lrs[warmup:]
    assert all(after[i + 1] <= after[i] + 1e-15 for i in range(len(after) - 1))  # monotone decreasing
    assert lrs[max_steps] == pytest.approx(tc.min_lr, rel=1e-9)  # reaches min_lr at max_steps
    if max_steps - warmup >= 4:  # cosine: halfway between lr and min_lr at the middle of the decay
        mid = warmup + (max_steps - warmup) / 2
        if mid == int(mid):
            assert lr_at(int(mid), tc) == pytest.approx((tc.lr + tc.min_lr) / 2, rel=1e-9)


def test_lr_schedule_values_written_out_from_its_definition() -> None:
    """Warmup: step s < warmup runs at lr * (s + 1) / (warmup + 1), so step 0 already trains (never at
    lr 0); then cosine from lr at step ``warmup`` to min_lr at ``max_steps``, and min_lr after it."""
    tc = TrainConfig(lr=1e-3, min_lr=1e-4, warmup_steps=4, max_steps=12)
    want = {0: 2e-4, 1: 4e-4, 2: 6e-4, 3: 8e-4,
            4: 1e-3,  # cosine at progress 0
            6: 1e-4 + 9e-4 * 0.5 * (1 + 0.7071067811865476),  # progress 1/4: cos(pi/4)
            8: 5.5e-4,  # progress 1/2: halfway
            10: 1e-4 + 9e-4 * 0.5 * (1 - 0.7071067811865476),  # progress 3/4
            12: 1e-4, 13: 1e-4, 100: 1e-4}
    for step, lr in want.items():
        assert lr_at(step, tc) == pytest.approx(lr, rel=1e-12, abs=1e-15), step
    assert lr_at(0, TrainConfig(lr=1e-3, min_lr=1e-4, warmup_steps=0, max_steps=10)) == pytest.approx(1e-3)


# -------------------------------------------------------------------------------- optimizers
def test_muon_takes_the_block_matrices_and_adamw_the_rest() -> None:
    from genforge.models.rnn import RNNLM, RNNConfig

    model = GPT(GPTConfig(vocab_size=20, block_size=16, n_layer=2, n_head=2, n_embd=16, position="rope"))
    adamw, muon = make_optimizers(model, TrainConfig(optimizer="muon", lr=1e-3, muon_lr=0.05), torch.device("cpu"))
    assert isinstance(adamw, torch.optim.AdamW) and isinstance(muon, torch.optim.Muon)
    names = {id(p): n for n, p in model.named_parameters()}
    in_muon = {names[id(p)] for g in muon.param_groups for p in g["params"]}
    in_adamw = {names[id(p)] for g in adamw.param_groups for p in g["params"]}
    assert not in_muon & in_adamw and in_muon | in_adamw == set(names.values())  # each once, none left out
    assert in_muon == {n for n, p in model.named_parameters() if p.dim() == 2 and ".h." in n}
    assert len(in_muon) == 2 * 4  # c_attn, attn.c_proj, c_fc, mlp.c_proj per block
    set_lr([adamw, muon], 5e-4, TrainConfig(optimizer="muon", lr=1e-3, muon_lr=0.05))  # one schedule,
    # each optimizer at the same fraction of its own peak
    assert muon.param_groups[0]["lr"] == pytest.approx(0.025) and adamw.param_groups[0]["lr"] == 5e-4
    (only,) = make_optimizers(model, TrainConfig(), torch.device("cpu"))
    assert isinstance(only, torch.optim.AdamW)
    with pytest.raises(ConfigError, match="Transformers"):
        make_optimizers(RNNLM(RNNConfig(vocab_size=20)), TrainConfig(optimizer="muon"), torch.device("cpu"))
    for bad in (dict(optimizer="sgd"), dict(muon_lr=0.0), dict(optimizer="muon", precision="fp16")):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            TrainConfig(**bad)


def test_weight_decay_goes_to_matrices_only_by_name() -> None:
    """AdamW decays the weight matrices and embeddings; biases and LayerNorm gains/biases are not decayed."""
    from genforge.models.rnn import RNNLM, RNNConfig

    def groups(model, **kw):
        (opt,) = make_optimizers(model, TrainConfig(weight_decay=0.1, **kw), torch.device("cpu"))
        names = {id(p): n for n, p in model.named_parameters()}
        return {g["weight_decay"]: sorted(names[id(p)] for p in g["params"]) for g in opt.param_groups}

    h = "transformer.h.0."
    gpt = GPT(GPTConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=8))
    assert groups(gpt) == {
        0.1: sorted(["transformer.wte.weight", "transformer.wpe.weight", h + "attn.c_attn.weight",
                     h + "attn.c_proj.weight", h + "mlp.c_fc.weight", h + "mlp.c_proj.weight"]),
        0.0: sorted([h + "ln_1.weight", h + "ln_1.bias", h + "attn.c_attn.bias", h + "attn.c_proj.bias",
                     h + "ln_2.weight", h + "ln_2.bias", h + "mlp.c_fc.bias", h + "mlp.c_proj.bias",
                     "transformer.ln_f.weight", "transformer.ln_f.bias"]),
    }
    rnn = RNNLM(RNNConfig(vocab_size=20, n_layer=1))
    assert groups(rnn) == {0.1: ["lm_head.weight", "rnn.weight_hh_l0", "rnn.weight_ih_l0", "wte.weight"],
                           0.0: ["lm_head.bias", "rnn.bias_hh_l0", "rnn.bias_ih_l0"]}
    # with Muon, AdamW keeps the same rule for what it still holds
    (adamw, _) = make_optimizers(gpt, TrainConfig(optimizer="muon", weight_decay=0.1), torch.device("cpu"))
    names = {id(p): n for n, p in gpt.named_parameters()}
    no_decay = sorted(names[id(p)] for g in adamw.param_groups if g["weight_decay"] == 0.0 for p in g["params"])
    assert no_decay == groups(gpt)[0.0]


def test_adamw_hyperparameters_come_from_the_config() -> None:
    model = GPT(GPTConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=8))
    (opt,) = make_optimizers(model, TrainConfig(lr=3e-3, min_lr=1e-4, beta1=0.8, beta2=0.95, weight_decay=0.05),
                             torch.device("cpu"))
    assert isinstance(opt, torch.optim.AdamW)
    for g in opt.param_groups:
        assert g["betas"] == (0.8, 0.95) and g["lr"] == 3e-3
    assert sorted(g["weight_decay"] for g in opt.param_groups) == [0.0, 0.05]
