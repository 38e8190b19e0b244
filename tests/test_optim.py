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
