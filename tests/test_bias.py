"""Bias probes (``genforge.safety.bias``, ``genforge eval --bias``): the prompt pairs, the paired bootstrap,
detection of an injected difference on synthetic continuations, and the CLI on a tiny trained model."""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from genforge.cli import main
from genforge.safety.bias import (
    METRICS,
    bias_markdown,
    paired_bootstrap,
    prompt_pairs,
    run_probes,
    score,
    t_quantile,
)
from genforge.safety.bias_terms import AXES, LEXICONS


@pytest.mark.parametrize("chat", [False, True])
def test_a_pair_differs_only_in_the_group_term(chat: bool) -> None:
    pairs = prompt_pairs(chat)
    assert {p.axis for p in pairs} == set(AXES)
    for axis in AXES:
        assert sum(p.axis == axis for p in pairs) >= 5, axis
    for p in pairs:
        (a, b), (pa, pb) = p.terms, p.prompts
        assert a != b and pa != pb
        i = p.template.index("{")
        head, tail = p.template[:i], p.template[p.template.index("}") + 1:]
        assert pa == head + a + tail and pb == head + b + tail  # the rest is the same, character for character
        slot = p.template[i + 1:p.template.index("}")]
        assert (a, b) in AXES[p.axis]["slots"][slot]
    assert len({p.prompts for p in pairs}) == len(pairs)


def test_no_lexicon_word_is_a_group_term() -> None:
    terms = {t.lower() for spec in AXES.values() for pairs in spec["slots"].values() for pair in pairs for t in pair}
    for name, words in LEXICONS.items():
        assert not words & terms, name


def test_the_bootstrap_interval_covers_a_known_mean_and_narrows_with_more_prompts() -> None:
    rng = np.random.default_rng(1)
    true_mean, covered, widths = 0.3, 0, {30: [], 120: []}
    for trial in range(200):
        for n in (30, 120):
            iv = paired_bootstrap(rng.normal(true_mean, 1.0, n), resamples=1000, seed=trial)
            assert iv.low <= iv.mean <= iv.high and iv.n == n
            widths[n].append(iv.high - iv.low)
            covered += n == 30 and iv.low <= true_mean <= iv.high
    assert 0.88 <= covered / 200 <= 0.99  # a 95% interval, give or take the bootstrap's small-sample bias
    ratio = np.mean(widths[120]) / np.mean(widths[30])
    assert 0.4 < ratio < 0.6  # width ~ 1/sqrt(n): half with four times the prompts
    assert paired_bootstrap([0.0] * 10).flagged is False and paired_bootstrap([1.0, 1.2, 0.9] * 5).flagged


def test_the_t_quantile_of_the_expanded_interval_matches_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    for df in (5, 10, 15, 40, 200):
        for p in (0.025, 0.05, 0.975):
            assert t_quantile(p, df) == pytest.approx(stats.t.ppf(p, df), abs=1e-3)


def synthetic(pairs, injected: float):
    """Words drawn from one pool for both groups (some of them score: "good", "foul", "sword", ...); a group-B
    prompt gets "wicked" with probability ``injected``. The random numbers depend on the seed and the prompt,
    so equal groups still differ by chance."""
    b_prompts = {p.prompts[1] for p in pairs}
    pool = ["the", "a", "day", "went", "by", "and", "we", "walked", "to", "town", "under", "sky", "with", "bread",
            "good", "foul", "sword", "fair", "crown", "home", "noble", "sad", "happy"]

    def sample(prompt: str, n: int, seed: int) -> list[str]:
        rng = random.Random(f"{seed}/{prompt}")
        out = []
        for _ in range(n):
            words = [rng.choice(pool) for _ in range(8)]
            if prompt in b_prompts and rng.random() < injected:
                words[rng.randrange(8)] = "wicked"
            out.append(" ".join(words))
        return out

    return sample


def test_an_injected_difference_is_found_and_equal_groups_are_not_flagged() -> None:
    pairs = prompt_pairs()
    found = run_probes(synthetic(pairs, 0.6), pairs, n=6, seed=3, resamples=1000)
    for axis, r in found["axes"].items():
        neg, sent = r["metrics"]["negative_traits"], r["metrics"]["sentiment"]
        assert neg["flag"] and neg["low"] > 0 and neg["b"] > neg["a"], axis
        assert sent["flag"] and sent["high"] < 0, axis  # "wicked" is negative to VADER
        assert abs(neg["diff"] - 0.6 / 8) < 0.03  # about one word in eight, on 60% of the continuations
    flags = 0
    for seed in range(3):
        same = run_probes(synthetic(pairs, 0.0), pairs, n=6, seed=seed, resamples=1000)
        flags += sum(v["flag"] for r in same["axes"].values() for v in r["metrics"].values())
        assert all(abs(v["diff"]) > 0 for r in same["axes"].values() for v in r["metrics"].values())
    assert flags <= 0.1 * 3 * len(AXES) * len(METRICS)  # ~5% by chance, not a systematic flag


def test_scores_mask_the_pair_terms() -> None:
    import vaderSentiment.vaderSentiment as v

    vader = v.SentimentIntensityAnalyzer()
    sent = lambda t: vader.polarity_scores(t)["compound"]  # noqa: E731
    assert score("the poor man, so poor", ("rich", "poor"), sent)["sentiment"] == 0.0
    s = score("a bloody sword and a fair face", (), sent)
    assert s["violence"] == pytest.approx(2 / 7) and s["appearance"] == pytest.approx(2 / 7)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    import os

    from conftest import make_corpus_text, tiny_config

    from genforge.train.fit import fit

    root = tmp_path_factory.mktemp("bias")
    corpus = root / "corpus.txt"
    corpus.write_text(make_corpus_text(), encoding="utf-8")
    old = os.environ.get("GENFORGE_HOME")
    os.environ["GENFORGE_HOME"] = str(root / "home")
    try:
        return fit(tiny_config(root, corpus, max_steps=10, eval_interval=10)).checkpoint
    finally:
        if old is not None:
            os.environ["GENFORGE_HOME"] = old


def test_the_cli_prints_a_table_and_writes_json(tiny_model: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "bias.json"
    assert main(["eval", "--model", str(tiny_model), "--bias", "--n", "2", "--max-tokens", "6", "--seed", "5",
                 "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["n"] == 2 and report["seed"] == 5 and report["max_tokens"] == 6 and report["prompting"] == "plain"
    assert report["skipped_pairs"] > 0  # the tiny corpus lacks letters some prompts need: skipped, not fatal
    assert "gender" in report["axes"] and "95% interval" in printed and "skipped" in printed
    for axis, r in report["axes"].items():
        assert set(r["metrics"]) == set(METRICS) and r["pairs"] >= 2
        for v in r["metrics"].values():
            assert v["low"] <= v["diff"] <= v["high"] and v["flag"] == (v["low"] > 0 or v["high"] < 0)
        assert f"| {axis} (" in report["markdown"]
    assert report["markdown"] == bias_markdown(report) and not report["markdown"].startswith("#")


@pytest.mark.parametrize("argv, needle", [
    (["--model", "moses-smiles", "--bias"], "--bias measures text models; moses-smiles is a molecule model"),
    (["--bias", "--n", "0"], "--n 0 is out of range"),
])
def test_bias_refusals_are_one_line(capsys, argv: list[str], needle: str) -> None:
    assert main(["eval", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
