"""Speculative decoding (``sampling.speculative``): exact in distribution, identical when greedy.

Properties: the rejection rule emits each token with the target's probability, for a model draft and for
a deterministic (prompt-lookup) draft, checked by Monte Carlo against p itself; a whole speculative run
at temperature 1 matches the target's exact joint distribution over two tokens (enumerated); at
temperature 0 the output equals plain greedy decoding token for token, with a different random draft, the
target as its own draft (every draft kept) and prompt lookup, including when the end token stops it;
the verify pass equals a full forward pass; what the method cannot do is one clear error.
"""
from __future__ import annotations

import pytest
import torch

from genforge.errors import GenforgeError
from genforge.models import build_model
from genforge.sampling.speculative import (
    LookupDraft,
    ModelDraft,
    SpecStats,
    accept_or_resample,
    speculative_tokens,
)
from genforge.sampling.tokens import sample_sequences
from genforge.types import SamplingParams


def gpt(seed: int, vocab: int = 20, layers: int = 2, width: int = 32) -> torch.nn.Module:
    torch.manual_seed(seed)
    m = build_model("transformer", {"vocab_size": vocab, "n_layer": layers, "n_head": 2, "n_embd": width,
                                    "block_size": 128, "dropout": 0.0})
    with torch.no_grad():  # sharper than the init's near-uniform logits, so greedy choices are well separated
        m.lm_head.weight.mul_(40.0)
    return m.eval()


def plain(model, prompt, params, eos=-1):
    return sample_sequences(model, prompt, 1, params, eos, torch.Generator().manual_seed(0))[0]


def test_the_rejection_rule_emits_the_target_distribution():
    g = torch.Generator().manual_seed(0)
    p = torch.tensor([0.5, 0.2, 0.15, 0.1, 0.05])
    q = torch.tensor([0.1, 0.4, 0.1, 0.3, 0.1])
    n = 20000
    counts = torch.zeros(5)
    for _ in range(n):
        d = int(torch.multinomial(q, 1, generator=g))
        counts[accept_or_resample(p, q, d, g, greedy=False)[1]] += 1
    assert (counts / n - p).abs().max() < 0.012
    counts = torch.zeros(5)  # prompt lookup: a fixed proposal (q one-hot on it)
    for _ in range(n):
        counts[accept_or_resample(p, None, 3, g, greedy=False)[1]] += 1
    assert (counts / n - p).abs().max() < 0.012
    assert accept_or_resample(p, q, 1, g, greedy=True) == (False, 0)
    assert accept_or_resample(p, q, 0, g, greedy=True) == (True, 0)


def test_a_speculative_run_samples_the_target_joint_distribution():
    target, draft = gpt(1, vocab=4, width=16), gpt(2, vocab=4, width=16)
    with torch.no_grad():
        for m in (target, draft):
            m.lm_head.weight.div_(40.0 / 3)  # softer: every pair of tokens has real mass
    prompt = [1, 2]
    exact = {}
    with torch.no_grad():
        p1 = torch.softmax(target(torch.tensor([prompt]))[0, -1], -1)
        for a in range(4):
            p2 = torch.softmax(target(torch.tensor([prompt + [a]]))[0, -1], -1)
            for b in range(4):
                exact[(a, b)] = float(p1[a] * p2[b])
    params = SamplingParams(max_tokens=2, temperature=1.0, top_k=0, top_p=1.0)
    g, n, seen = torch.Generator().manual_seed(3), 3000, dict.fromkeys(exact, 0)
    for _ in range(n):
        out = speculative_tokens(target, prompt, params, None, g, ModelDraft(draft), k=2)
        seen[tuple(out)] += 1
    tv = 0.5 * sum(abs(seen[x] / n - exact[x]) for x in exact)
    assert tv < 0.05, tv


@pytest.mark.parametrize("eos", [-1, 7])
def test_greedy_speculative_output_is_the_plain_greedy_output(eos: int):
    target, other = gpt(1), gpt(2, layers=1, width=16)
    params = SamplingParams(max_tokens=60, temperature=0.0)
    prompts = ([3, 5, 7, 9], [1], [4, 4, 4, 4, 4, 4])
    for prompt in prompts:
        want = plain(target, prompt, params, eos)
        for draft, k in ((ModelDraft(other), 4), (ModelDraft(other), 1), (LookupDraft(3), 5)):
            assert speculative_tokens(target, prompt, params, eos, None, draft, k=k) == want, (prompt, draft, k)
        stats = SpecStats()
        assert speculative_tokens(target, prompt, params, eos, None, ModelDraft(target), k=4, stats=stats) == want
        assert stats.acceptance == 1.0 and stats.emitted == len(want) and stats.tokens_per_pass > 1


def test_prompt_lookup_keeps_drafts_on_repetitive_text():
    target = gpt(4)
    params = SamplingParams(max_tokens=40, temperature=0.0)
    prompt = plain(target, [2, 3], SamplingParams(max_tokens=30, temperature=0.0))  # the model's own text
    stats = SpecStats()
    out = speculative_tokens(target, [2, 3] + prompt, params, -1, None, LookupDraft(2), k=6, stats=stats)
    assert out == plain(target, [2, 3] + prompt, params)
    assert stats.accepted > 0 and stats.rounds < len(out)


def test_verify_equals_a_full_forward_pass():
    m = gpt(5)
    ids = torch.tensor([[1, 2, 3, 4, 5, 6, 7]])
    state = m.init_state(1, 32)
    m.step(ids[:, :3], state)
    got = m.verify(ids[:, 3:], state)
    assert torch.allclose(got, m(ids)[:, 3:], atol=1e-4)
    state.pos = 4  # roll back: positions 4.. are forgotten and written again
    assert torch.allclose(m.verify(torch.tensor([[9, 9]]), state), m(torch.tensor([[1, 2, 3, 4, 9, 9]]))[:, 4:],
                          atol=1e-4)


def test_what_speculative_decoding_refuses():
    target = gpt(1)
    rnn = build_model("rnn", {"vocab_size": 20, "n_layer": 1, "n_embd": 8, "hidden": 16})
    ok = SamplingParams(max_tokens=8, temperature=0.0)
    cases = [(dict(model=rnn), "Transformer target"),
             (dict(params=SamplingParams(max_tokens=8, repetition_penalty=1.2)), "penalties"),
             (dict(k=0), "k=0 is out of range"),
             (dict(params=SamplingParams(max_tokens=127)), "the model's context is 128 tokens")]
    for over, msg in cases:
        with pytest.raises(GenforgeError, match=msg):
            speculative_tokens(over.get("model", target), [1, 2], over.get("params", ok), -1, None,
                               ModelDraft(gpt(2)), k=over.get("k", 4))
    with pytest.raises(GenforgeError, match="Transformer draft"):
        ModelDraft(rnn)


def test_the_pipeline_and_the_cli_speculate(tmp_path, make_config, capsys):
    from conftest import tiny_config

    import genforge
    from genforge.cli import main
    from genforge.train.fit import fit

    target = fit(make_config(max_steps=30, eval_interval=30)).out_dir
    draft = fit(make_config(max_steps=30, eval_interval=30, n_layer=1, train={"out_dir": str(tmp_path / "d")})).out_dir
    tm = genforge.load(str(target))
    want = tm.generate("The ", max_tokens=24, temperature=0)
    assert tm.speculate("The ", draft=str(draft), max_tokens=24, temperature=0).text == want
    assert tm.generate("The ", draft="lookup", max_tokens=24, temperature=0) == want
    other = tmp_path / "other.txt"
    other.write_text("0123456789 +-*/=\n" * 400)
    alien = fit(tiny_config(tmp_path, other, max_steps=2, eval_interval=2, train={"out_dir": str(tmp_path / "o")}))
    with pytest.raises(GenforgeError, match="does not share the codec"):
        tm.speculate("The ", draft=str(alien.out_dir), max_tokens=4)
    args = ["generate", "--model", str(target), "--prompt", "The ", "--temperature", "0", "--max-tokens", "24"]
    capsys.readouterr()
    assert main([*args, "--draft", str(draft), "--draft-k", "3"]) == 0
    got = capsys.readouterr()
    assert got.out == "The " + want + "\n" and "speculative: 24 tokens in" in got.err
    assert main([*args, "--draft", str(draft), "--ngram", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("genforge: error: --ngram applies to --draft lookup") and len(err.splitlines()) == 1
