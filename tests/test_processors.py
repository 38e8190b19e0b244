"""The logits processors against a plain-Python reference written from their definitions.

The reference applies, in this order: penalties (CTRL repetition penalty, OpenAI frequency and
presence penalties) -> temperature -> top-k -> top-p (nucleus) -> min-p. Each step works on the
previous step's output, so applying them in any other order (top-p before temperature, say) keeps
other tokens and the tests below fail.
"""
from __future__ import annotations

import math
import random

import pytest
import torch

from genforge.sampling.processors import process_logits, sample_next, top_p_filter
from genforge.types import SamplingParams

NEG_INF = float("-inf")


def _softmax(xs: list[float]) -> list[float]:
    m = max(xs)
    e = [math.exp(x - m) if x != NEG_INF else 0.0 for x in xs]
    s = sum(e)
    return [v / s for v in e]


def reference(logits: list[float], counts: list[int], p: SamplingParams) -> list[float]:
    """penalties -> temperature -> top-k -> top-p -> min-p, one row, dropped tokens at -inf."""
    out = []
    for x, c in zip(logits, counts):
        if c > 0:
            x = x / p.repetition_penalty if x > 0 else x * p.repetition_penalty
            x = x - c * p.frequency_penalty - p.presence_penalty
        out.append(x)
    out = [x / p.temperature for x in out]
    if 0 < p.top_k < len(out):
        kth = sorted(out, reverse=True)[p.top_k - 1]
        out = [x if x >= kth else NEG_INF for x in out]
    if p.top_p < 1.0:
        probs = _softmax(out)
        order = sorted(range(len(out)), key=lambda i: -out[i])
        above, keep = 0.0, set()
        for i in order:
            if above < p.top_p or not keep:  # the mass ranked strictly above must be < top_p
                keep.add(i)
            above += probs[i]
        out = [x if i in keep else NEG_INF for i, x in enumerate(out)]
    if p.min_p > 0:
        probs = _softmax(out)
        floor = max(probs) * p.min_p
        out = [x if q >= floor else NEG_INF for x, q in zip(out, probs)]
    return out


CASES = [
    dict(temperature=0.5, top_p=0.6),
    dict(temperature=2.0, top_p=0.6),
    dict(temperature=1.5, top_k=4, top_p=0.7),
    dict(temperature=0.7, top_k=6, top_p=0.9, min_p=0.1),
    dict(temperature=2.0, min_p=0.3),  # 2 is the top of the one temperature rule (SamplingParams)
    dict(temperature=1.0, presence_penalty=1.5, frequency_penalty=0.5, top_p=0.8),
    dict(temperature=0.8, repetition_penalty=1.8, top_k=5),
    dict(temperature=1.2, repetition_penalty=1.3, frequency_penalty=-0.5, presence_penalty=0.7, top_k=8,
         top_p=0.85, min_p=0.05),
]


@pytest.mark.parametrize("kw", CASES, ids=[",".join(f"{k}={v}" for k, v in c.items()) for c in CASES])
def test_process_logits_equals_the_reference_chain(kw: dict) -> None:
    rng = random.Random(0)
    params = SamplingParams(**kw)
    for _ in range(40):
        v = rng.randint(5, 24)
        logits = [rng.gauss(0, 2) for _ in range(v)]
        counts = [rng.choice((0, 0, 0, 1, 2, 5)) for _ in range(v)]
        want = reference(logits, counts, params)
        got = process_logits(torch.tensor([logits]), params, torch.tensor([counts], dtype=torch.float32))[0]
        assert [x != NEG_INF for x in want] == torch.isfinite(got).tolist(), (logits, counts)
        finite = [i for i, x in enumerate(want) if x != NEG_INF]
        assert got[finite].tolist() == pytest.approx([want[i] for i in finite], rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("kw", CASES[:4], ids=[str(i) for i in range(4)])
def test_sampled_frequencies_follow_the_reference_distribution(kw: dict) -> None:
    logits = [2.0, 1.6, 1.1, 0.9, 0.4, 0.0, -0.3, -1.0, -2.5]
    params = SamplingParams(seed=0, **kw)
    want = _softmax(reference(logits, [0] * len(logits), params))
    n = 20000
    ids, _ = sample_next(torch.tensor([logits]).expand(n, -1), params, None, torch.Generator().manual_seed(3))
    got = (torch.bincount(ids, minlength=len(logits)).float() / n).tolist()
    assert all(g == 0 for g, w in zip(got, want) if w == 0)  # dropped tokens are never drawn
    assert 0.5 * sum(abs(g - w) for g, w in zip(got, want)) < 0.02


def test_top_p_keeps_exactly_the_nucleus() -> None:
    # probabilities 0.5, 0.3, 0.15, 0.05 in two orders: the nucleus is a set of tokens, not a count
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.05, 0.15, 0.3, 0.5]]))
    kept = lambda top_p: torch.isfinite(top_p_filter(logits, top_p)).tolist()  # noqa: E731
    assert kept(0.75) == [[True, True, False, False], [False, False, True, True]]
    assert kept(0.81) == [[True, True, True, False], [False, True, True, True]]
    assert kept(0.45) == [[True, False, False, False], [False, False, False, True]]  # the top token alone
    assert kept(0.96) == [[True] * 4, [True] * 4]
    assert kept(1e-9) == [[True, False, False, False], [False, False, False, True]]
    kept_logits = top_p_filter(logits, 0.75)
    assert torch.equal(kept_logits[torch.isfinite(kept_logits)], logits[torch.isfinite(kept_logits)])
