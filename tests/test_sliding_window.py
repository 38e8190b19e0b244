"""Generation past the context: the window slides (re-prefill of the most recent tokens when the cache is full).

After every slide the logits are those of a from-scratch forward pass over the tokens the window kept,
for learned and rotary positions; seeds repeat; stop strings, UTF-8 and end of sequence hold across a
slide; the Python API, ``genforge generate`` and a server started with ``sliding_window`` go past the
context, a server without it keeps OpenAI's error.
"""
from __future__ import annotations

import io
from contextlib import redirect_stdout
from pathlib import Path

import httpx
import pytest
import torch
from conftest import make_corpus_text, tiny_config
from serving import running_server
from test_models import gpt
from test_sampling import BigramLM

import genforge
from genforge.codecs.bpe import BPECodec
from genforge.errors import GenforgeError
from genforge.sampling.search import beam_search, best_of_n
from genforge.sampling.text import END_OF_TEXT, eos_id, generate_text, stream_text
from genforge.sampling.tokens import feed, slide_keep, start_rows, stream_tokens
from genforge.types import SamplingParams

CTX = 32  # test_models.gpt's block_size
POSITIONS = ["learned", "rope"]


def visible_windows(prompt: list[int], generated: list[int], ctx: int) -> list[list[int]]:
    """The policy, written out: the tokens the model sees when it predicts each generated token.

    It sees everything since the last slide; when that would exceed ``ctx`` tokens it slides to the
    ``slide_keep(ctx)`` most recent ones."""
    seq, start, out = list(prompt), 0, []
    for t in generated:
        out.append(seq[start:])
        seq.append(t)
        if len(seq) - start > ctx:
            start = len(seq) - slide_keep(ctx)
    return out


@pytest.mark.parametrize("position", POSITIONS)
@torch.no_grad()
def test_after_every_step_and_slide_the_logits_equal_a_fresh_forward_over_the_window(position: str) -> None:
    model = gpt(position=position)
    prompt, n = [3, 1, 4, 1, 5, 9, 2, 6], 3 * CTX
    params = SamplingParams(max_tokens=n)
    run = start_rows(model, prompt, 2, params, slide=True)
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, model.vocab_size, (n, 2), generator=g)  # two rows, different continuations
    slides = 0
    for i in range(n):
        for row in range(2):
            window = visible_windows(prompt, tokens[:i + 1, row].tolist(), CTX)[-1]
            assert len(window) <= CTX
            want = model(torch.tensor([window]))[0, -1]
            torch.testing.assert_close(run.last[row], want, atol=1e-4, rtol=0,
                                       msg=lambda m, i=i, r=row: f"token {i}, row {r}: {m}")
        before = run.length
        feed(model, run, tokens[i])
        slides += run.length < before
    # the first slide comes when the cache is full; each later one after context - keep + 1 more tokens
    assert slides == 1 + (len(prompt) + n - CTX - 1) // (CTX - slide_keep(CTX) + 1) == 8


@pytest.mark.parametrize("position", POSITIONS)
def test_a_window_limited_model_generates_far_past_its_context(position: str) -> None:
    model, prompt, n = gpt(position=position), [5, 7, 11], 5 * CTX
    got = [t for t, _ in stream_tokens(model, prompt, SamplingParams(max_tokens=n, temperature=0.0), slide=True)]
    assert len(got) == n
    with torch.no_grad():  # greedy: each token is the argmax of a fresh forward over its window
        want = [int(model(torch.tensor([w]))[0, -1].argmax()) for w in visible_windows(prompt, got, CTX)]
    assert got == want


def test_sliding_is_seeded_and_changes_nothing_before_the_first_slide() -> None:
    model, prompt = gpt(position="rope"), [2, 4, 6]

    def run(n: int, seed: int, slide: bool = True) -> list[int]:
        return [t for t, _ in stream_tokens(model, prompt, SamplingParams(max_tokens=n, seed=seed), slide=slide)]

    long = run(100, 5)
    assert long == run(100, 5) and long != run(100, 6)
    fits = CTX - len(prompt)  # as many as fit without a slide: identical with sliding off
    assert long[:fits] == run(fits, 5, slide=False)


def test_without_sliding_the_context_is_a_clear_error_and_a_prompt_must_fit_either_way() -> None:
    model = gpt()
    with pytest.raises(GenforgeError, match="context is 32 tokens: lower max_tokens to 29"):
        stream_tokens(model, [1, 2, 3], SamplingParams(max_tokens=30))
    with pytest.raises(GenforgeError, match="prompt has 33 tokens but the model's context is 32"):
        stream_tokens(model, [1] * 33, SamplingParams(max_tokens=5), slide=True)
    assert len(list(stream_tokens(model, [1] * 32, SamplingParams(max_tokens=5), slide=True))) == 5


def test_best_of_and_beam_search_slide_too() -> None:
    model, prompt, n = gpt(), [1, 2, 3], 2 * CTX
    cands = best_of_n(model, prompt, SamplingParams(best_of=3, max_tokens=n, seed=1), slide=True)
    assert [len(ids) for ids, _, _ in cands] == [n] * 3
    greedy = [t for t, _ in stream_tokens(model, prompt, SamplingParams(max_tokens=n, temperature=0), slide=True)]
    ((ids, _),) = beam_search(model, prompt, SamplingParams(num_beams=1, max_tokens=n), slide=True)
    assert ids == greedy
    beams = beam_search(model, prompt, SamplingParams(num_beams=3, max_tokens=n), slide=True)
    assert len(beams) == 3 and all(len(b) == n for b, _ in beams)


# ------------------------------------------------------------- text on top: stop strings, UTF-8, eos
@pytest.fixture(scope="module")
def byte_codec() -> BPECodec:
    """A byte-level BPE codec learned on ASCII only: every non-ASCII character is several byte tokens."""
    return BPECodec.train(["hello world, the quick brown fox " * 20], vocab_size=270)


def script_model(ids: list[int], vocab: int, end: int, max_len: int) -> BigramLM:
    """A bigram model that (almost surely) continues ``ids`` in order (ids distinct), then emits ``end``."""
    table = torch.zeros(vocab, vocab)
    for a, b in zip(ids, ids[1:] + [end]):
        table[a, b] = 40.0
    return BigramLM(table, max_len=max_len)


SCRIPT_TEXT = "aé€жSTOPz"  # non-ASCII characters of 2 and 3 bytes; distinct bytes, so a bigram can script it


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_utf8_stop_strings_and_end_of_sequence_across_slides(byte_codec: BPECodec, temperature: float) -> None:
    ids, eos = byte_codec.encode(SCRIPT_TEXT), eos_id(byte_codec)
    assert eos == byte_codec.token_to_id(END_OF_TEXT) and len(ids) == len(set(ids)) == len(SCRIPT_TEXT.encode())
    model = script_model(ids, byte_codec.vocab_size, eos, max_len=4)  # slides every token or two
    prompt = byte_codec.decode(ids[:1])
    base = dict(max_tokens=40, temperature=temperature, seed=0)

    pieces = list(stream_text(model, byte_codec, prompt, SamplingParams(**base), eos_id=eos, slide=True))
    assert "".join(pieces) == SCRIPT_TEXT[1:] and "�" not in "".join(pieces)  # no half characters
    g = generate_text(model, byte_codec, prompt, SamplingParams(**base), eos_id=eos, slide=True)
    assert (g.text, g.finish_reason, g.token_ids) == (SCRIPT_TEXT[1:], "eos", ids[1:] + [eos])

    stop = SamplingParams(**base, stop=("€жS",))
    assert "".join(stream_text(model, byte_codec, prompt, stop, eos_id=eos, slide=True)) == "é"
    g = generate_text(model, byte_codec, prompt, stop, eos_id=eos, slide=True)
    assert (g.text, g.finish_reason) == ("é", "stop")
    for kw in ({"best_of": 2}, {"num_beams": 2}):
        g = generate_text(model, byte_codec, prompt, SamplingParams(**base, **kw), eos_id=eos, slide=True)
        assert (g.text, g.finish_reason, g.token_ids[-1]) == (SCRIPT_TEXT[1:], "eos", eos)


# ------------------------------------------------------------------------ the entry points
def trained_run(tmp_path_factory: pytest.TempPathFactory, name: str, **overrides) -> Path:
    """A ``tiny_config`` run (a 32-token context, char codec: a token is a character) trained on the
    generated corpus; returns its folder."""
    from genforge.train.fit import fit

    root = tmp_path_factory.mktemp(name)
    corpus = root / "corpus.txt"
    corpus.write_text(make_corpus_text(), encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENFORGE_HOME", str(root / "home"))
        fit(tiny_config(root, corpus, **overrides))
    return root / "run"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trained_run(tmp_path_factory, "sliding")


PROMPT = "ROMEO:\n"  # 7 tokens


def test_python_api_slides_by_default(tiny_run: Path) -> None:
    tm = genforge.load(tiny_run)
    assert tm.context_length == CTX
    g = tm.complete(PROMPT, max_tokens=100, seed=3)
    assert (len(g.token_ids), g.finish_reason) == (100, "length")
    assert "".join(tm.stream(PROMPT, max_tokens=100, seed=3)) == g.text == tm.generate(PROMPT, max_tokens=100, seed=3)
    with pytest.raises(GenforgeError, match="context is 32 tokens"):
        tm.complete(PROMPT, max_tokens=100, sliding_window=False)


def test_cli_generate_writes_past_the_context(tiny_run: Path) -> None:
    from genforge.cli import main

    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["generate", "--model", str(tiny_run), "--prompt", PROMPT, "--max-tokens", "100",
                     "--seed", "0"]) == 0
    text = out.getvalue()
    assert text.startswith(PROMPT) and len(text) == len(PROMPT) + 100 + 1


def test_serve_has_the_sliding_window_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    from genforge import cli
    from genforge.serve import app, state

    seen = []
    monkeypatch.setattr(app, "serve", lambda settings, *a, **k: seen.append(settings))
    monkeypatch.setattr(app, "check_port", lambda port: None)
    monkeypatch.setattr(state, "load_models", lambda settings: {})
    for argv, want in ((["serve"], False), (["serve", "--sliding-window"], True)):
        assert cli.main(argv) == 0 and seen.pop().sliding_window is want


def test_server_slides_only_when_started_with_the_option(tiny_run: Path) -> None:
    from genforge.serve.app import ServeSettings

    tm = genforge.load(tiny_run)
    body = {"model": "run", "prompt": PROMPT, "max_tokens": 90, "temperature": 0.9, "seed": 4}
    with running_server(ServeSettings(models=[str(tiny_run)]), {str(tiny_run): tm}) as (_, url):
        r = httpx.post(url + "/v1/completions", json=body, timeout=60)
        assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
    with running_server(ServeSettings(models=[str(tiny_run)], sliding_window=True), {str(tiny_run): tm}) as (app, url):
        r = httpx.post(url + "/v1/completions", json=body, timeout=60)
        assert r.status_code == 200, r.text
        choice = r.json()["choices"][0]
        want = tm.complete(PROMPT, max_tokens=90, temperature=0.9, seed=4)
        assert (choice["text"], choice["finish_reason"]) == (want.text, "length")
        assert app.state.genforge.models["run"].engine.slides > 0


def test_benchmark_smoke(tmp_path: Path) -> None:
    from conftest import run_benchmark_smoke

    out = run_benchmark_smoke("sliding_window", tmp_path, "--threads", "1")
    assert out["context"] == 256 and out["machine"]["cpu_count"]
    ratios = out["ratio_to_20_tokens"]
    assert {"280 keep 3/4", "280 nanoGPT crop"} <= set(ratios) and all(r["median"] > 0 for r in ratios.values())
