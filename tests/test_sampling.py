"""Sampling: processors, stop strings, the decode loop, best-of-n and beam search, on tiny real models."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterable
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from genforge.errors import GenforgeError
from genforge.sampling.processors import (
    apply_penalties,
    apply_temperature,
    min_p_filter,
    sample_next,
    top_k_filter,
)
from genforge.sampling.search import beam_search, best_of_n, kept_score
from genforge.sampling.stop import StopMatcher, cut_at_stop
from genforge.sampling.text import generate_text, stream_text
from genforge.sampling.tokens import stream_tokens
from genforge.types import Codec, SamplingParams, StepModel

torch.set_num_threads(1)


# ---------------------------------------------------------------- tiny models and codec


class BigramLM(nn.Module):
    """Logits for the next token are a row of a table picked by the current token; state = position."""

    def __init__(self, table: Tensor, max_len: int = 64, last_only: bool = False) -> None:
        super().__init__()
        self.table = nn.Embedding.from_pretrained(table.float(), freeze=True)
        self.vocab_size, self.max_len, self.last_only = table.shape[0], max_len, last_only

    def init_state(self, batch_size: int, max_len: int) -> dict[str, int]:
        return {"pos": 0, "rows": batch_size}

    def step(self, ids: Tensor, state: dict[str, int]) -> tuple[Tensor, dict[str, int]]:
        assert ids.shape[0] == state["rows"] and state["pos"] + ids.shape[1] <= self.max_len
        logits = self.table(ids)
        return (logits[:, -1:] if self.last_only else logits), {**state, "pos": state["pos"] + ids.shape[1]}

    def reorder_state(self, state: dict[str, int], index: Tensor) -> dict[str, int]:
        return {**state, "rows": len(index)}


class GRULM(nn.Module):
    """A 1-layer GRU language model; its state (the hidden vector) really depends on the history."""

    def __init__(self, vocab: int, seed: int = 0, scale: float = 1.0, max_len: int = 64) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.vocab_size, self.max_len, self.scale = vocab, max_len, scale
        self.emb, self.gru, self.head = (
            nn.Embedding(vocab, 16),
            nn.GRU(16, 16, batch_first=True),
            nn.Linear(16, vocab),
        )

    def init_state(self, batch_size: int, max_len: int) -> Tensor:
        return torch.zeros(1, batch_size, 16)

    def step(self, ids: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        out, h = self.gru(self.emb(ids), state)
        return self.head(out) * self.scale, h

    def reorder_state(self, state: Tensor, index: Tensor) -> Tensor:
        return state.index_select(1, index)

    def full_logits(self, ids: list[int]) -> Tensor:
        with torch.no_grad():
            return self.step(torch.tensor([ids]), self.init_state(1, len(ids)))[0][0]


def recomputed_logprob(model: GRULM, prompt: list[int], gen: list[int]) -> float:
    logp = torch.log_softmax(model.full_logits(prompt + gen).float(), dim=-1)
    return sum(float(logp[len(prompt) - 1 + j, t]) for j, t in enumerate(gen))


class PieceDecoder:
    def __init__(self, codec: PieceCodec) -> None:
        self.codec = codec

    def push(self, token_id: int) -> str:
        return self.codec.pieces[token_id]

    def flush(self) -> str:
        return ""


class PieceCodec:
    """Each token is a fixed string (one char or several); encode is greedy longest match."""

    kind = "char"

    def __init__(self, pieces: list[str]) -> None:
        self.pieces = pieces

    @property
    def vocab_size(self) -> int:
        return len(self.pieces)

    def encode(self, text: str) -> list[int]:
        out = []
        while text:
            i = max(
                (i for i, p in enumerate(self.pieces) if text.startswith(p)),
                key=lambda i: len(self.pieces[i]),
            )
            out.append(i)
            text = text[len(self.pieces[i]) :]
        return out

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.pieces[i] for i in ids)

    def decoder(self) -> PieceDecoder:
        return PieceDecoder(self)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "pieces": self.pieces}


def chain_model(pieces: list[str], strength: float = 40.0) -> BigramLM:
    """A bigram model that (almost surely) emits the pieces in order, then repeats the last one."""
    v = len(pieces)
    table = torch.zeros(v, v)
    for i in range(v):
        table[i, min(i + 1, v - 1)] = strength
    return BigramLM(table)


SCRIPT = PieceCodec(list("xabcSTOPdef"))
GRU_CODEC = PieceCodec(list("abcde fghi\n"))


def greedy_by_hand(model: GRULM, prompt: list[int], n: int) -> list[int]:
    seq = list(prompt)
    for _ in range(n):
        seq.append(int(model.full_logits(seq)[-1].argmax()))
    return seq[len(prompt) :]


# ---------------------------------------------------------------- protocol sanity


def test_test_models_follow_the_protocols() -> None:
    assert isinstance(GRULM(5), StepModel) and isinstance(BigramLM(torch.zeros(3, 3)), StepModel)
    assert isinstance(SCRIPT, Codec)


# ---------------------------------------------------------------- processors


def test_presence_and_frequency_penalties_exact() -> None:
    logits = torch.tensor([[1.0, -2.0, 0.5, 3.0]])
    counts = torch.tensor([[0.0, 1.0, 3.0, 0.0]])
    out = apply_penalties(logits, counts, 1.0, 0.5, 0.25)
    assert torch.allclose(out, torch.tensor([[1.0, -2.0 - 0.5 - 0.25, 0.5 - 1.5 - 0.25, 3.0]]))


def test_repetition_penalty_sign_handling() -> None:
    logits = torch.tensor([[2.0, -2.0, 2.0, -2.0, 0.0]])
    counts = torch.tensor([[1.0, 2.0, 0.0, 0.0, 1.0]])
    out = apply_penalties(logits, counts, 2.0, 0.0, 0.0)
    assert torch.equal(out, torch.tensor([[1.0, -4.0, 2.0, -2.0, 0.0]]))
    assert apply_penalties(logits, counts, 1.0, 0.0, 0.0) is logits  # defaults are a no-op


def test_top_k_and_min_p_filters() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.05, 0.15, 0.3, 0.5]]))
    assert torch.isfinite(top_k_filter(logits, 2)).tolist() == [
        [True, True, False, False],
        [False, False, True, True],
    ]
    # top-p: which tokens it keeps is checked in test_processors.py
    assert torch.equal(apply_temperature(logits, 2.0), logits / 2.0)
    g = torch.Generator().manual_seed(0)
    rand = torch.randn(6, 30, generator=g) * 2
    for min_p in (0.05, 0.2, 0.6):
        out = min_p_filter(rand, min_p)
        probs = torch.softmax(rand, -1)
        keep = probs >= min_p * probs.max(-1, keepdim=True).values
        assert torch.equal(torch.isfinite(out), keep)
        assert torch.equal(out[keep], rand[keep])


@pytest.mark.parametrize("kw", [{"temperature": 0.7}, {"temperature": 2.0}, {"temperature": 1.3, "top_k": 3}])
def test_sampled_distribution_matches_softmax(kw: dict[str, Any]) -> None:
    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, -3.0])
    params = SamplingParams(**kw)
    n = 20000
    ids, lps = sample_next(logits.expand(n, -1), params, None, torch.Generator().manual_seed(1))
    want = top_k_filter(logits[None] / params.temperature, params.top_k).softmax(-1)[0]
    got = torch.bincount(ids, minlength=6).float() / n
    assert 0.5 * (got - want).abs().sum() < 0.03
    assert torch.allclose(lps, torch.log_softmax(logits, -1)[ids])  # raw, temperature-1 logprobs


# ---------------------------------------------------------------- stop matcher


def run_matcher(stops: tuple[str, ...], pieces: list[str]) -> tuple[list[str], bool]:
    m, out = StopMatcher(stops), []
    for p in pieces:
        safe, stopped = m.push(p)
        out.append(safe)
        if stopped:
            return out, True
    out.append(m.flush())
    return out, False


def test_stop_split_across_many_pieces() -> None:
    out, stopped = run_matcher(("STOP",), ["ab", "S", "T", "O", "P", "zz"])
    assert stopped and out == ["ab", "", "", "", ""]


def test_stop_false_alarm_and_flush() -> None:
    assert run_matcher(("STOP",), ["ST", "Ox", "y"]) == (["", "STOx", "y", ""], False)
    assert run_matcher(("STOP",), ["abST"]) == (["ab", "ST"], False)
    assert run_matcher((), ["a", "b"]) == (["a", "b", ""], False)


def test_stop_several_candidates_and_overlaps() -> None:
    assert run_matcher(("cat", "dog"), ["I have a dog and a cat"]) == (["I have a "], True)
    assert run_matcher(("aab",), ["a", "a", "a", "b"]) == (["", "", "a", ""], True)
    assert run_matcher(("xyz", "yq"), ["x", "y", "q"]) == (["", "", "x"], True)
    m = StopMatcher(("ab",))
    assert m.push("zab") == ("z", True) and m.push("more") == ("", True) and m.flush() == ""


def test_stop_matcher_random_splits_match_reference() -> None:
    rnd = random.Random(0)
    for _ in range(300):
        text = "".join(rnd.choice("abS") for _ in range(rnd.randint(0, 20)))
        stops = tuple(
            {"".join(rnd.choice("abS") for _ in range(rnd.randint(1, 4))) for _ in range(rnd.randint(1, 3))}
        )
        cuts = sorted(rnd.sample(range(len(text) + 1), k=min(len(text) + 1, rnd.randint(0, 6))))
        pieces = [text[i:j] for i, j in zip([0] + cuts, cuts + [len(text)])]
        out, stopped = run_matcher(stops, pieces)
        hits = [i for i in (text.find(s) for s in stops) if i >= 0]
        assert "".join(out) == (text[: min(hits)] if hits else text) and stopped == bool(hits)
        shown = ""
        for piece in out:  # no prefix of the stream ever ends inside a stop string's match
            shown += piece
            assert all(s not in shown for s in stops)


# ---------------------------------------------------------------- decode loop


def test_greedy_matches_full_recompute() -> None:
    model, prompt = GRULM(11, seed=0), [1, 2, 3]
    got = list(stream_tokens(model, prompt, SamplingParams(temperature=0.0, max_tokens=12)))
    ids = [t for t, _ in got]
    assert ids == greedy_by_hand(model, prompt, 12)
    assert math.isclose(sum(lp for _, lp in got), recomputed_logprob(model, prompt, ids), abs_tol=1e-4)


def test_last_position_only_model_gives_same_tokens() -> None:
    table = torch.randn(9, 9, generator=torch.Generator().manual_seed(3))
    p = SamplingParams(max_tokens=15, seed=4)
    assert list(stream_tokens(BigramLM(table), [1, 2], p)) == list(
        stream_tokens(BigramLM(table, last_only=True), [1, 2], p)
    )


def test_seed_determinism() -> None:
    model = GRULM(11, seed=1, scale=0.1)  # nearly uniform: high entropy

    def run(**kw: Any) -> list[int]:
        return [t for t, _ in stream_tokens(model, [0], SamplingParams(max_tokens=20, **kw))]

    assert run(seed=5) == run(seed=5)
    assert run(seed=5) != run(seed=6)
    explicit = [
        t
        for t, _ in stream_tokens(model, [0], SamplingParams(max_tokens=20), torch.Generator().manual_seed(5))
    ]
    assert explicit == run(seed=5)
    assert len(run()) == 20  # seed None: random, still works


@pytest.mark.parametrize("kw", [{"top_k": 1}, {"top_p": 1e-6}])
def test_top_k_1_and_tiny_top_p_are_greedy(kw: dict[str, Any]) -> None:
    model, prompt = GRULM(11, seed=2), [4, 5]
    greedy = list(stream_tokens(model, prompt, SamplingParams(temperature=0.0, max_tokens=10)))
    assert (
        list(stream_tokens(model, prompt, SamplingParams(temperature=1.5, max_tokens=10, seed=9, **kw)))
        == greedy
    )


@pytest.mark.parametrize("temperature", [1e-7, 1e-40, 5e-324])
def test_vanishing_temperature_is_greedy_not_an_overflow(temperature: float) -> None:
    # logits / 5e-324 is inf: sampling it would fail; such a temperature means greedy
    model, prompt = GRULM(11, seed=2), [4, 5]
    greedy = [t for t, _ in stream_tokens(model, prompt, SamplingParams(temperature=0.0, max_tokens=10))]
    got = [t for t, _ in stream_tokens(model, prompt, SamplingParams(temperature=temperature, max_tokens=10))]
    assert got == greedy


def test_penalties_in_the_loop_count_the_prompt() -> None:
    row = torch.tensor([3.0, 2.5, 2.0, 1.5, 1.2, 0.5])
    model = BigramLM(row.expand(6, 6).clone())
    ids = [
        t
        for t, _ in stream_tokens(
            model, [0], SamplingParams(temperature=0.0, max_tokens=5, presence_penalty=2.0)
        )
    ]
    assert ids == [1, 2, 3, 4, 0]  # token 0 (in the prompt) is at 3 - 2 = 1.0, below the unseen 1.2
    ids = [
        t
        for t, _ in stream_tokens(
            model, [5], SamplingParams(temperature=0.0, max_tokens=3, repetition_penalty=4.0)
        )
    ]
    assert ids == [0, 1, 2]


def test_max_tokens_respected_and_callback() -> None:
    calls: list[tuple[int, int]] = []
    it = stream_tokens(
        GRULM(11), [1], SamplingParams(max_tokens=7, seed=0), callback=lambda i, n: calls.append((i, n))
    )
    next(it)
    assert not torch.is_inference_mode_enabled()  # inference mode is not held across the yield
    assert len(list(it)) == 6 and calls == [(i, 7) for i in range(1, 8)]
    gen = generate_text(GRULM(11), GRU_CODEC, "ab", SamplingParams(max_tokens=7, seed=0))
    assert (
        len(gen.token_ids) == 7
        and gen.finish_reason == "length"
        and gen.text == GRU_CODEC.decode(gen.token_ids)
    )


def test_context_overflow_and_empty_prompt_errors() -> None:
    model = BigramLM(torch.zeros(5, 5), max_len=256)
    with pytest.raises(GenforgeError) as e:
        stream_tokens(model, [1] * 70, SamplingParams(max_tokens=200))  # raised at call time
    msg = str(e.value)
    assert all(s in msg for s in ("70", "200", "256", "186")), msg
    with pytest.raises(GenforgeError, match="empty"):
        stream_tokens(model, [], SamplingParams())
    with pytest.raises(GenforgeError, match="at most 255"):
        beam_search(model, [1] * 300, SamplingParams(num_beams=2, max_tokens=5))


# ---------------------------------------------------------------- text, stop strings


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_stop_string_cuts_and_never_leaks(temperature: float) -> None:
    model = chain_model(SCRIPT.pieces)
    params = SamplingParams(max_tokens=20, stop=("STOP",), temperature=temperature, seed=0)
    pieces = list(stream_text(model, SCRIPT, "x", params))
    assert "".join(pieces) == "abc" and not any("S" in p or "T" in p for p in pieces)
    gen = generate_text(model, SCRIPT, "x", params)
    assert (gen.text, gen.finish_reason, gen.token_ids) == ("abc", "stop", SCRIPT.encode("abc"))
    full = generate_text(model, SCRIPT, "x", SamplingParams(max_tokens=12, temperature=temperature, seed=0))
    assert full.text == "abcSTOPdefff" and full.finish_reason == "length"
    several = SamplingParams(max_tokens=20, stop=("Sx", "OP", "TOPd"), temperature=temperature)
    assert "".join(stream_text(model, SCRIPT, "x", several)) == "abcST"


def test_stop_inside_a_multi_char_token() -> None:
    codec = PieceCodec(["x", "ab", "cS", "TOP", "de"])
    model, params = chain_model(codec.pieces), SamplingParams(max_tokens=10, stop=("STOP",), temperature=0.0)
    assert list(stream_text(model, codec, "x", params)) == ["ab", "c"]
    gen = generate_text(model, codec, "x", params)
    assert (gen.text, gen.token_ids, gen.finish_reason) == ("abc", [1, 2], "stop")  # "cS" straddles: kept
    assert cut_at_stop(codec, [1, 2, 3, 4], ("STOP",)) == ("abc", 2, True)
    assert cut_at_stop(codec, [1, 3], ("TOP",)) == ("ab", 1, True)  # stop starts at a token boundary


def test_a_stop_string_at_the_very_start_gives_empty_text_and_keeps_no_token() -> None:
    model = chain_model(SCRIPT.pieces)  # from "x" the chain writes "abcSTOP..."
    for params in (SamplingParams(max_tokens=10, stop=("ab",), temperature=0.0),
                   SamplingParams(max_tokens=10, stop=("a",), temperature=0.9, seed=3)):
        assert list(stream_text(model, SCRIPT, "x", params)) == []
        gen = generate_text(model, SCRIPT, "x", params)
        assert (gen.text, gen.token_ids, gen.finish_reason) == ("", [], "stop")
    assert cut_at_stop(SCRIPT, SCRIPT.encode("abc"), ("ab",)) == ("", 0, True)


@pytest.mark.parametrize("stop", [(), ("e",), ("a b",)])
def test_streamed_text_equals_generate_text(stop: tuple[str, ...]) -> None:
    model = GRULM(GRU_CODEC.vocab_size, seed=4, scale=0.5)
    params = SamplingParams(max_tokens=30, seed=11, stop=stop, top_k=8)
    streamed = "".join(stream_text(model, GRU_CODEC, "abc", params))
    gen = generate_text(model, GRU_CODEC, "abc", params)
    assert streamed == gen.text
    prompt = GRU_CODEC.encode("abc")
    every = [t for t, _ in stream_tokens(model, prompt, params)]  # same seed, stop strings not applied
    full = GRU_CODEC.decode(every)
    hits = [i for i in (full.find(s) for s in stop) if i >= 0]
    assert gen.text == (full[: min(hits)] if hits else full)
    assert gen.finish_reason == ("stop" if hits else "length")
    assert gen.token_ids == every[: len(gen.text)]  # one char per token here
    assert math.isclose(gen.logprob, recomputed_logprob(model, prompt, gen.token_ids), abs_tol=1e-4)


def test_streaming_refuses_best_of_and_beams() -> None:
    for kw in ({"best_of": 2}, {"num_beams": 2}):
        with pytest.raises(GenforgeError, match="best_of=1 and num_beams=1"):
            stream_text(GRULM(11), GRU_CODEC, "a", SamplingParams(**kw))


# ---------------------------------------------------------------- beam search


def test_beam_search_one_beam_is_greedy() -> None:
    model = GRULM(11, seed=5)
    ((ids, score),) = beam_search(model, [2, 3], SamplingParams(num_beams=1, max_tokens=9))
    assert ids == greedy_by_hand(model, [2, 3], 9)
    assert math.isclose(score, recomputed_logprob(model, [2, 3], ids) / 9, abs_tol=1e-4)


def test_beam_search_beats_greedy() -> None:
    lg = math.log
    table = torch.tensor(
        [
            [-30.0, lg(0.6), lg(0.4), -30.0],
            [0.0, 0.0, 0.0, 0.0],
            [-30.0, -30.0, -30.0, 0.0],
            [0.0, 0.0, 0.0, 0.0],
        ]
    )
    model = BigramLM(table)
    greedy = [t for t, _ in stream_tokens(model, [0], SamplingParams(temperature=0.0, max_tokens=2))]
    assert greedy[0] == 1  # greedy takes 0.6 then 0.25: p = 0.15
    (best, score), _ = beam_search(model, [0], SamplingParams(num_beams=2, max_tokens=2))
    assert best == [2, 3] and math.isclose(score, math.log(0.4) / 2, abs_tol=1e-4)  # p = 0.4


def test_wide_beam_is_exhaustive_and_scores_are_exact() -> None:
    model, prompt, lp = GRULM(5, seed=6, scale=2.0), [1], 0.5
    beams = beam_search(model, prompt, SamplingParams(num_beams=25, max_tokens=3, length_penalty=lp))
    brute = max(
        itertools.product(range(5), repeat=3), key=lambda s: recomputed_logprob(model, prompt, list(s))
    )
    assert beams[0][0] == list(brute) and len(beams) == 25
    scores = [s for _, s in beams]
    assert scores == sorted(scores, reverse=True)
    for ids, s in beams:  # the state was reordered correctly: scores match a full recompute
        assert math.isclose(s, recomputed_logprob(model, prompt, ids) / 3**lp, abs_tol=1e-4)


def test_beam_search_with_stop_string() -> None:
    gen = generate_text(
        chain_model(SCRIPT.pieces), SCRIPT, "x", SamplingParams(num_beams=3, max_tokens=20, stop=("STOP",))
    )
    assert (gen.text, gen.finish_reason, gen.token_ids) == ("abc", "stop", SCRIPT.encode("abc"))


# ---------------------------------------------------------------- best-of-n


def test_best_of_n_sorted_with_exact_logprobs() -> None:
    model, prompt = GRULM(11, seed=7, scale=0.7), [3, 1]
    cands = best_of_n(
        model, prompt, SamplingParams(best_of=5, max_tokens=6), torch.Generator().manual_seed(2)
    )
    assert len(cands) == 5 and len({tuple(c[0]) for c in cands}) > 1
    means = [m for _, _, m in cands]
    assert means == sorted(means, reverse=True)
    for ids, total, mean in cands:
        assert len(ids) == 6 and math.isclose(total, recomputed_logprob(model, prompt, ids), abs_tol=1e-4)
        assert math.isclose(mean, total / 6, abs_tol=1e-6)


def test_generate_text_best_of_reranks_kept_tokens() -> None:
    model = GRULM(GRU_CODEC.vocab_size, seed=8, scale=0.5)
    params = SamplingParams(best_of=4, max_tokens=12, seed=3, stop=("e",))
    gen = generate_text(model, GRU_CODEC, "ab", params)
    prompt = GRU_CODEC.encode("ab")
    cands = best_of_n(model, prompt, params, torch.Generator().manual_seed(3))
    kept = []
    for ids, _, _ in cands:
        text, n_kept, _ = cut_at_stop(GRU_CODEC, ids, params.stop)
        lps = [
            recomputed_logprob(model, prompt, ids[: j + 1]) - recomputed_logprob(model, prompt, ids[:j])
            for j in range(len(ids))
        ]
        kept.append((kept_score(lps, n_kept, 1.0), text, ids[:n_kept]))
    best = max(kept, key=lambda k: k[0])
    assert (gen.text, gen.token_ids) == (best[1], best[2]) and "e" not in gen.text
    assert math.isclose(gen.logprob, recomputed_logprob(model, prompt, gen.token_ids), abs_tol=1e-4)
