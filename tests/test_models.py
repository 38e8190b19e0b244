"""Models: KV-cache / hidden-state stepping, causality, tying, Hugging Face GPT-2 parity, inference layouts."""
from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from genforge.errors import CheckpointError, ConfigError
from genforge.models import build_model
from genforge.models.gpt2_hf import load_gpt2_hf
from genforge.models.inference import prepare_for_inference
from genforge.models.rnn import RNNLM, RNNConfig
from genforge.models.transformer import GPT, GPTConfig
from genforge.sampling.tokens import stream_tokens
from genforge.types import BatchedStepModel, SamplingParams, StepModel

torch.set_num_threads(1)

V, T = 50, 24  # vocabulary and test sequence length


def _randomize(model: nn.Module, std: float = 0.3, seed: int = 0) -> nn.Module:
    """Re-draw every parameter with a large std: attention becomes sharp and position-dependent, so a
    wrong mask, position or cache slot changes the logits far beyond the tolerances used here."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return model.eval()


def gpt(seed: int = 0, **kw) -> GPT:
    cfg = dict(vocab_size=V, block_size=32, n_layer=2, n_head=2, n_embd=32)
    cfg.update(kw)
    return _randomize(GPT(GPTConfig(**cfg)), seed=seed)


def rnn(cell: str, seed: int = 0) -> RNNLM:
    return _randomize(RNNLM(RNNConfig(vocab_size=V, cell=cell, n_layer=2, n_embd=32, hidden=32)), seed=seed)


def ids_batch(batch: int = 2, length: int = T, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, V, (batch, length), generator=torch.Generator().manual_seed(seed))


def step_chunks(model: StepModel, ids: torch.Tensor, sizes: list[int]) -> dict[int, torch.Tensor]:
    """Feed ``ids`` in chunks of ``sizes`` through one state; {last position of chunk: logits (B, V)}."""
    state = model.init_state(ids.shape[0], ids.shape[1])
    out, pos = {}, 0
    for n in sizes:
        logits, state = model.step(ids[:, pos:pos + n], state)
        assert logits.shape == (ids.shape[0], 1, model.vocab_size)
        pos += n
        out[pos - 1] = logits[:, 0]
    assert pos == ids.shape[1]
    return out


MODELS = {
    "gpt": lambda: gpt(),
    "gpt-untied-nobias": lambda: gpt(tie_weights=False, bias=False),
    "gpt-rope": lambda: gpt(position="rope", activation="relu2"),
    "lstm": lambda: rnn("lstm"),
    "gru": lambda: rnn("gru"),
}


# ------------------------------------------------------------------------- stepping = forward
@pytest.mark.parametrize("name", MODELS)
@torch.no_grad()
def test_step_token_by_token_and_in_chunks_match_forward(name: str) -> None:
    model = MODELS[name]()
    ids = ids_batch(length=9)
    full = model(ids)  # (B, T, V)
    assert full.shape == (2, 9, V)
    for sizes in ([1] * 9, [3, 5, 1], [9], [2, 2, 2, 2, 1], [1, 8]):
        got = step_chunks(model, ids, sizes)
        for pos, logits in got.items():
            torch.testing.assert_close(logits, full[:, pos], atol=1e-5, rtol=0,
                                       msg=lambda m, s=sizes, p=pos: f"chunks {s}, position {p}: {m}")


@pytest.mark.parametrize("name", MODELS)
@torch.no_grad()
def test_step_on_every_prefix_matches_forward(name: str) -> None:
    """step returns the last position only: a fresh state fed each prefix covers every position."""
    model = MODELS[name]()
    ids = ids_batch(length=T)
    full = model(ids)
    for t in range(1, T + 1):
        logits, state = model.step(ids[:, :t], model.init_state(2, T))
        torch.testing.assert_close(logits[:, 0], full[:, t - 1], atol=1e-5, rtol=0)
    # a state that was prefilled and then continued one token at a time, to the end of the context
    state = model.init_state(2, T)
    logits, state = model.step(ids[:, :5], state)
    for t in range(5, T):
        logits, state = model.step(ids[:, t:t + 1], state)
        torch.testing.assert_close(logits[:, 0], full[:, t], atol=1e-5, rtol=0)


@torch.no_grad()
def test_gpt_cache_is_bounded_by_the_context() -> None:
    model = gpt()
    state = model.init_state(1, 10_000)  # asking for more than the context gets the context
    ids = ids_batch(1, 32)
    logits, state = model.step(ids, state)
    torch.testing.assert_close(logits[:, 0], model(ids)[:, -1], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="32"):
        model.step(ids[:, :1], state)
    with pytest.raises(ValueError, match="exceeds context 32"):
        model(ids_batch(1, 33))


# -------------------------------------------------------------------------------- causality
@pytest.mark.parametrize("name", ["gpt", "gpt-rope", "lstm", "gru"])
@torch.no_grad()
def test_changing_token_t_changes_no_earlier_logits(name: str) -> None:
    model = MODELS[name]()
    ids = ids_batch(1, T)
    base = model(ids)
    for t in (0, 1, 7, T - 1):
        changed = ids.clone()
        changed[0, t] = (changed[0, t] + 1 + t) % V
        out = model(changed)
        torch.testing.assert_close(out[:, :t], base[:, :t], atol=0, rtol=0)  # exactly: nothing leaks back
        assert (out[:, t] - base[:, t]).abs().max() > 1e-3  # and the token itself is seen


# ---------------------------------------------------------------------------- reorder_state
@pytest.mark.parametrize("name", ["gpt", "gpt-rope", "lstm", "gru"])
@torch.no_grad()
def test_reorder_state_selects_rows(name: str) -> None:
    model = MODELS[name]()
    ids = ids_batch(2, 7)
    nxt = torch.tensor([[3], [3]])
    ref_logits, _ = model.step(nxt, model.step(ids, model.init_state(2, 16))[1])
    assert (ref_logits[0] - ref_logits[1]).abs().max() > 1e-3  # the rows differ to begin with

    _, state = model.step(ids, model.init_state(2, 16))
    state = model.reorder_state(state, torch.tensor([1, 1]))
    logits, state = model.step(nxt, state)
    torch.testing.assert_close(logits[0], ref_logits[1], atol=1e-5, rtol=0)
    torch.testing.assert_close(logits[1], ref_logits[1], atol=1e-5, rtol=0)

    _, state = model.step(ids, model.init_state(2, 16))
    state = model.reorder_state(state, torch.tensor([1, 0]))  # a swap
    logits, _ = model.step(nxt, state)
    torch.testing.assert_close(logits, ref_logits.flip(0), atol=1e-5, rtol=0)


# ------------------------------------------------------------------ continuous batching rows
@pytest.mark.parametrize("name", ["gpt", "gpt-rope", "lstm", "gru"])
@torch.no_grad()
def test_batched_rows_of_ragged_lengths_match_each_row_alone(name: str) -> None:
    """The ``BatchedStepModel`` interface: rows put from one-row states, stepped together, moved."""
    model = MODELS[name]()
    assert isinstance(model, BatchedStepModel)
    seqs = [ids_batch(1, n, seed=n)[0] for n in (3, 11, 6)]
    state = model.init_state(4, 32)  # one row more than used: step_rows runs over rows 0..n-1
    for row, seq in enumerate(seqs):  # prefill each row alone, then copy it into its row
        _, single = model.step(seq[None, :-1], model.init_state(1, 32))
        model.put_row(state, row, single)
    lengths = torch.tensor([len(s) - 1 for s in seqs])
    logits = model.step_rows(torch.stack([s[-1:] for s in seqs]), state, lengths)
    for row, seq in enumerate(seqs):  # each row's last token sits at its own position
        torch.testing.assert_close(logits[row, 0], model(seq[None])[0, -1], atol=1e-5, rtol=0)
    model.move_row(state, 2, 0, len(seqs[2]))  # row 2 replaces row 0; then rows 0 and 1 step on
    nxt = torch.tensor([[7], [8]])
    logits = model.step_rows(nxt, state, torch.tensor([len(seqs[2]), len(seqs[1])]))
    for row, seq in enumerate((seqs[2], seqs[1])):
        torch.testing.assert_close(logits[row, 0], model(torch.cat([seq, nxt[row]])[None])[0, -1], atol=1e-5, rtol=0)
    one = model.step_rows(torch.tensor([[9]]), state, torch.tensor([len(seqs[2]) + 1]))  # a lone row
    torch.testing.assert_close(one[0, 0], model(torch.cat([seqs[2], nxt[0], torch.tensor([9])])[None])[0, -1],
                               atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------------- RoPE
def test_rope_scores_depend_only_on_the_distance() -> None:
    from genforge.models.transformer import rope_angles, rotate

    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 16, generator=g), torch.randn(2, 16, generator=g)

    def score(i: int, j: int) -> torch.Tensor:
        (cq, sq), (ck, sk) = rope_angles(torch.tensor(i), 16, 10000.0), rope_angles(torch.tensor(j), 16, 10000.0)
        return (rotate(q, cq, sq) * rotate(k, ck, sk)).sum(-1)

    for i, j in ((5, 2), (9, 9), (0, 7)):
        torch.testing.assert_close(score(i + 13, j + 13), score(i, j), atol=1e-4, rtol=0)
    assert (score(5, 2) - score(5, 3)).abs().max() > 1e-2  # and the distance does matter
    assert torch.equal(rotate(q, *rope_angles(torch.tensor(0), 16, 10000.0)), q)  # position 0 is unturned


def test_rope_model_has_no_position_table_and_is_shift_invariant() -> None:
    """Without a position table the model sees only distances: the same tokens at positions 5..12
    give the same hidden states as at 0..7 (with learned positions they do not)."""
    model = gpt(position="rope")
    assert "transformer.wpe.weight" not in model.state_dict()
    assert "transformer.wpe.weight" in gpt().state_dict()
    ids = ids_batch(1, 8)
    ref = model(ids)[0]
    with torch.no_grad():
        h_start = model._hidden(ids, 0, None)
        h_shift = model._hidden(ids, 5, None)  # same tokens, positions 5..12
    torch.testing.assert_close(h_shift, h_start, atol=1e-4, rtol=0)
    torch.testing.assert_close(model.lm_head(h_start)[0], ref, atol=1e-6, rtol=0)
    learned = gpt()
    with torch.no_grad():
        assert (learned._hidden(ids, 5, None) - learned._hidden(ids, 0, None)).abs().max() > 1e-2


@torch.no_grad()
def test_activations_are_the_named_functions() -> None:
    """relu2's MLP is positively homogeneous of degree 2 (no biases): mlp(2x) = 4 mlp(x), and zero
    for inputs its first layer maps below zero; the GELUs are neither. The two GELUs differ."""
    x = torch.randn(3, 5, 32, generator=torch.Generator().manual_seed(0))
    mlps = {a: gpt(activation=a, bias=False).transformer.h[0].mlp for a in ("relu2", "gelu", "gelu_tanh")}
    torch.testing.assert_close(mlps["relu2"](2 * x), 4 * mlps["relu2"](x), atol=1e-4, rtol=1e-5)
    for a in ("gelu", "gelu_tanh"):
        assert (mlps[a](2 * x) - 4 * mlps[a](x)).abs().max() > 1e-2
    h = mlps["gelu"].c_fc(x)
    assert (mlps["gelu"].act(h) - mlps["gelu_tanh"].act(h)).abs().max() > 1e-5


# ---------------------------------------------------------------------------- weight tying
def test_weight_tying_shares_one_tensor_and_counts_it_once() -> None:
    cfg = dict(vocab_size=V, block_size=32, n_layer=2, n_head=2, n_embd=32)
    tied, untied = GPT(GPTConfig(**cfg)), GPT(GPTConfig(**cfg, tie_weights=False))
    assert tied.lm_head.weight is tied.transformer.wte.weight
    assert untied.lm_head.weight is not untied.transformer.wte.weight
    unique = {id(p): p.numel() for p in tied.parameters()}
    assert tied.num_parameters() == sum(unique.values())
    assert untied.num_parameters() - tied.num_parameters() == V * 32
    # a gradient step through the output layer moves the embedding too (it is the same tensor)
    before = tied.transformer.wte.weight.detach().clone()
    opt = torch.optim.SGD(tied.parameters(), lr=0.1)
    tied(ids_batch(1, 8)).sum().backward()
    opt.step()
    assert not torch.equal(before, tied.transformer.wte.weight)
    assert tied.lm_head.weight is tied.transformer.wte.weight


def test_rnn_parameter_count_matches_its_modules() -> None:
    m = RNNLM(RNNConfig(vocab_size=V, n_layer=2, n_embd=16, hidden=24))
    assert m.num_parameters() == sum(p.numel() for p in m.parameters()) > 0
    m_gru = RNNLM(RNNConfig(vocab_size=V, cell="gru", n_layer=2, n_embd=16, hidden=24))
    rec = lambda mod: sum(p.numel() for p in mod.rnn.parameters())  # noqa: E731
    assert rec(m) * 3 == rec(m_gru) * 4  # LSTM has 4 gates, GRU 3


# ---------------------------------------------------------------------- Hugging Face GPT-2
def _hf_model(folder: Path, activation: str = "gelu_new", tied: bool = True):
    pytest.importorskip("transformers")
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=100, n_positions=64, n_embd=32, n_layer=2, n_head=4, activation_function=activation,
                     initializer_range=0.2, bos_token_id=None, eos_token_id=None, tie_word_embeddings=tied)
    hf = GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():  # biases and LayerNorm gains start at 0/1; make them matter too
        for p in hf.parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
    hf.save_pretrained(str(folder))
    return hf


@pytest.fixture(scope="module")
def hf_pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf-gpt2")
    hf = _hf_model(folder)
    return hf, load_gpt2_hf(folder), folder


@torch.no_grad()
def test_hf_gpt2_logits_match_forward_and_cached_steps(hf_pair) -> None:
    hf, ours, _ = hf_pair
    ids = torch.randint(0, 100, (2, 40), generator=torch.Generator().manual_seed(3))
    ref = hf(ids).logits
    assert ref.std() > 0.1  # not a flat distribution: a real comparison
    torch.testing.assert_close(ours(ids), ref, atol=1e-4, rtol=0)
    got = step_chunks(ours, ids, [1] * 40)
    for pos, logits in got.items():
        torch.testing.assert_close(logits, ref[:, pos], atol=1e-4, rtol=0)
    got = step_chunks(ours, ids, [17, 1, 22])
    for pos, logits in got.items():
        torch.testing.assert_close(logits, ref[:, pos], atol=1e-4, rtol=0)



@torch.no_grad()
def test_hf_gpt2_with_exact_gelu_loads_with_that_activation(tmp_path: Path) -> None:
    hf = _hf_model(tmp_path, activation="gelu")
    ours = load_gpt2_hf(tmp_path)
    assert ours.config.activation == "gelu"
    ids = torch.randint(0, 100, (2, 30), generator=torch.Generator().manual_seed(4))
    ref = hf(ids).logits
    torch.testing.assert_close(ours(ids), ref, atol=1e-4, rtol=0)
    # the tanh approximation would be measurably off: the test can tell the two apart
    tanh = GPT(dataclasses.replace(ours.config, activation="gelu_tanh"), init=False)
    tanh.load_state_dict(ours.state_dict())
    assert (tanh.eval()(ids) - ref).abs().max() > 1e-3

@torch.no_grad()
def test_hf_gpt2_greedy_generation_matches_hf_generate(hf_pair) -> None:
    hf, ours, _ = hf_pair
    for seed in range(3):
        prompt = torch.randint(0, 100, (1, 6), generator=torch.Generator().manual_seed(seed))
        ref = hf.generate(prompt, max_new_tokens=20, do_sample=False, pad_token_id=0,
                          attention_mask=torch.ones_like(prompt))[0, 6:].tolist()
        assert len(ref) == 20
        mine = [t for t, _ in stream_tokens(ours, prompt[0].tolist(), SamplingParams(max_tokens=20, temperature=0))]
        assert mine == ref


def test_hf_gpt2_loaded_model_is_tied_and_in_eval_mode(hf_pair) -> None:
    _, ours, _ = hf_pair
    assert ours.lm_head.weight is ours.transformer.wte.weight
    assert not ours.training
    assert all(p.device.type == "cpu" for p in ours.parameters())  # nothing left on the meta device



@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("layout", ["fp32", "int8"])
@torch.no_grad()
def test_hf_gpt2_read_straight_into_a_decode_layout_equals_converting_after(hf_pair, tmp_path, layout, tied) -> None:
    """Reading each matrix straight into its decode form (no fp32 model first, for peak memory) must
    give exactly the model that loading fp32 and converting gives, tied output layer or not."""
    if tied:
        hf, ours, folder = hf_pair
    else:
        hf, folder = _hf_model(tmp_path, tied=False), tmp_path
        ours = load_gpt2_hf(folder)
        assert ours.lm_head.weight is not ours.transformer.wte.weight
    ids = torch.randint(0, 100, (2, 40), generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(ours(ids), hf(ids).logits, atol=1e-4, rtol=0)
    direct = load_gpt2_hf(folder, layout=layout)
    converted = prepare_for_inference(copy.deepcopy(ours), None if layout == "fp32" else "int8")
    assert not any(isinstance(m, nn.Linear) for m in direct.modules())
    assert [type(m).__name__ for m in direct.modules()] == [type(m).__name__ for m in converted.modules()]
    logits = direct(ids)
    assert torch.equal(logits, converted(ids))
    assert torch.equal(step_chunks(direct, ids, [7, 1, 32])[39], step_chunks(converted, ids, [7, 1, 32])[39])
    modules = [type(m) for m in direct.modules()]
    prepare_for_inference(direct, None if layout == "fp32" else "int8")  # already converted: changes nothing
    assert [type(m) for m in direct.modules()] == modules and torch.equal(direct(ids), logits)


def test_hf_gpt2_unknown_layout_is_a_config_error(hf_pair) -> None:
    with pytest.raises(ConfigError, match="int4"):
        load_gpt2_hf(hf_pair[2], layout="int4")
    with pytest.raises(ConfigError, match="dtype"):
        load_gpt2_hf(hf_pair[2], dtype=torch.bfloat16, layout="int8")

def _one_line_checkpoint_error(fn, *names: str) -> str:
    with pytest.raises(CheckpointError) as info:
        fn()
    msg = str(info.value)
    assert "\n" not in msg
    for n in names:
        assert n in msg, (n, msg)
    return msg


def test_hf_gpt2_bad_folders(hf_pair, tmp_path: Path) -> None:
    import shutil

    _, _, good = hf_pair
    no_cfg = tmp_path / "no-config"
    shutil.copytree(good, no_cfg)
    (no_cfg / "config.json").unlink()
    _one_line_checkpoint_error(lambda: load_gpt2_hf(no_cfg), "config.json")

    wrong = tmp_path / "wrong-shapes"
    shutil.copytree(good, wrong)
    cfg = json.loads((wrong / "config.json").read_text())
    cfg["n_embd"] = 64
    (wrong / "config.json").write_text(json.dumps(cfg))
    _one_line_checkpoint_error(lambda: load_gpt2_hf(wrong), str(wrong), "has shape", "expected")

    bad_json = tmp_path / "bad-json"
    shutil.copytree(good, bad_json)
    (bad_json / "config.json").write_text("{not json")
    _one_line_checkpoint_error(lambda: load_gpt2_hf(bad_json), "config.json")

    truncated = tmp_path / "truncated"
    shutil.copytree(good, truncated)
    data = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(data[: len(data) // 2])
    _one_line_checkpoint_error(lambda: load_gpt2_hf(truncated), "model.safetensors")


# ------------------------------------------------------------------------ inference layouts
def _greedy(model: StepModel, prompt: list[int], n: int = 20) -> list[int]:
    return [t for t, _ in stream_tokens(model, prompt, SamplingParams(max_tokens=n, temperature=0))]


@pytest.mark.parametrize("name", MODELS)
@torch.no_grad()
def test_fp32_inference_layout_is_exact(name: str) -> None:
    model = MODELS[name]()
    fast = prepare_for_inference(copy.deepcopy(model))
    assert not any(isinstance(m, nn.Linear) for m in fast.modules())  # every Linear was converted
    assert not any(p.requires_grad for p in fast.parameters())
    ids = ids_batch(2, T)
    torch.testing.assert_close(fast(ids), model(ids), atol=1e-5, rtol=0)
    for pos, logits in step_chunks(fast, ids, [3, 5, 1, T - 9]).items():
        torch.testing.assert_close(logits, model(ids)[:, pos], atol=1e-5, rtol=0)
    prompt = ids[0, :4].tolist()
    assert _greedy(fast, prompt) == _greedy(model, prompt)


@pytest.mark.parametrize("name", MODELS)
@torch.no_grad()
def test_int8_inference_layout_is_close(name: str) -> None:
    model = MODELS[name]()
    q = prepare_for_inference(copy.deepcopy(model), "int8")
    assert not any(isinstance(m, nn.Linear) for m in q.modules())  # really quantized
    ids = ids_batch(4, T)
    ref, got = model(ids), q(ids)
    corr = torch.corrcoef(torch.stack([ref.flatten(), got.flatten()]))[0, 1]
    assert corr > 0.99
    agree = (ref.argmax(-1) == got.argmax(-1)).float().mean()
    assert agree > 0.9
    # the cached decode path is just as close (not equal to q's forward: activations are quantized
    # per call, so their scale depends on which positions are in the call)
    stepped = step_chunks(q, ids, [1] * T)
    got_steps = torch.stack([stepped[p] for p in range(T)], dim=1)
    corr = torch.corrcoef(torch.stack([ref.flatten(), got_steps.flatten()]))[0, 1]
    assert corr > 0.99
    assert (ref.argmax(-1) == got_steps.argmax(-1)).float().mean() > 0.9



def test_quantize_rows_is_per_row_symmetric_and_leaves_its_input_alone() -> None:
    from genforge.models.inference import int8_values, quantize_rows

    w = torch.randn(37, 16, generator=torch.Generator().manual_seed(0)) * torch.logspace(-3, 1, 37)[:, None]
    before = w.clone()
    qw = quantize_rows(w, chunk=8)  # 37 rows: the last chunk is partial
    assert torch.equal(w, before)
    q, scale = int8_values(qw), qw.q_per_channel_scales().float()
    assert q.dtype == torch.int8 and q.abs().max() <= 127
    assert torch.equal(q.abs().amax(dim=1), torch.full((37,), 127, dtype=torch.int8))  # each row uses its range
    assert ((q.float() * scale[:, None] - w).abs() <= scale[:, None] / 2 + 1e-7).all()  # within half a step
    assert q.data_ptr() == qw.data_ptr()  # the int8 values are the quantized tensor's memory, not a copy
    assert torch.equal(qw.dequantize(), q.float() * scale[:, None])
    # reading the rows from a function (a file, in the loader) gives the same tensor
    from_reader = quantize_rows(lambda i, j: w[i:j].double(), rows=37, chunk=5)
    assert torch.equal(int8_values(from_reader), q) and torch.equal(from_reader.q_per_channel_scales(),
                                                                    qw.q_per_channel_scales())

def test_unknown_quantize_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="int4"):
        prepare_for_inference(gpt(), "int4")


# ------------------------------------------------------------------------ config validation
def test_gpt_config_validation_names_the_keys() -> None:
    with pytest.raises(ConfigError) as info:
        GPTConfig(n_embd=30, n_head=4)
    assert "n_embd" in str(info.value) and "n_head" in str(info.value)
    assert "30" in str(info.value) and "4" in str(info.value)
    for bad in (dict(n_layer=0), dict(vocab_size=-1), dict(dropout=1.0), dict(block_size=2.5), dict(activation="relu"),
                dict(position="alibi"), dict(rope_base=1), dict(rope_base=True)):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            GPTConfig(**bad)


def test_rnn_config_validation_names_the_keys() -> None:
    with pytest.raises(ConfigError) as info:
        RNNConfig(cell="xyz")
    assert "cell" in str(info.value) and "xyz" in str(info.value)
    for bad in (dict(hidden=0), dict(dropout=-0.1), dict(n_layer=0)):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            RNNConfig(**bad)


def test_build_model_rejects_unknown_kind_and_keys() -> None:
    with pytest.raises(ConfigError, match="'cnn'"):
        build_model("cnn", {})
    with pytest.raises(ConfigError, match="model.n_lyer"):
        build_model("transformer", {"n_lyer": 2})
    with pytest.raises(ConfigError, match="model.n_head"):
        build_model("transformer", {"n_head": "2"})
    m = build_model("rnn", {"cell": "gru", "vocab_size": 7, "n_embd": 8, "hidden": 8, "n_layer": 1})
    assert isinstance(m, RNNLM) and m.vocab_size == 7 and isinstance(m.rnn, nn.GRU)
