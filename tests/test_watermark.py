"""The green-list watermark (Kirchenbauer et al. 2023) on every path of the one token loop, its detector,
the settings file embedding and detection share, and ``genforge generate --watermark`` / ``detect``.

A tiny random Transformer (high entropy, like a large vocabulary model) carries the mark strongly; the
bundled shakespeare-char (84 characters, low entropy) needs a larger delta, as the benchmark measures.
"""
from __future__ import annotations

import io
import json
import math
import os
import stat
from dataclasses import replace

import pytest
import torch
from test_models import V, gpt
from test_token_loop import run_engine

import genforge
from genforge.cli import main
from genforge.codecs.char import CharCodec
from genforge.errors import GenforgeError
from genforge.safety.watermark import (
    Detection,
    check_record,
    codec_fingerprint,
    detect_ids,
    detect_text,
    load_watermark,
    read_record,
    write_record,
    z_test,
)
from genforge.sampling.search import beam_search, best_of_n
from genforge.sampling.tokens import sample_sequences, stream_tokens
from genforge.sampling.watermark import (
    WatermarkError,
    WatermarkSettings,
    apply_watermark,
    context_rows,
    green_mask,
    is_green,
)
from genforge.serve.chat_cli import run_chat
from genforge.serve.engine import BatchEngine
from genforge.types import SamplingParamError, SamplingParams

KEY = "test-key-0123456789abcdef"
PROMPT = [1, 2, 3, 4]


def wm(**kw) -> WatermarkSettings:
    return WatermarkSettings(**{"key": KEY, **kw})


@pytest.fixture(scope="module")
def model():
    return gpt(block_size=256)


def generate(model, seed: int, watermark: WatermarkSettings | None, n: int = 200, **kw) -> list[int]:
    params = SamplingParams(max_tokens=n, temperature=1.0, seed=seed, watermark=watermark, **kw)
    return [t for t, _ in stream_tokens(model, PROMPT, params)]


# --- the pure functions --------------------------------------------------------------------------
@pytest.mark.parametrize("field,bad", [("gamma", 0.0), ("gamma", 1.0), ("gamma", float("nan")), ("gamma", True),
                                       ("delta", -0.5), ("delta", float("inf")), ("context", 0), ("context", 9),
                                       ("context", 1.0), ("min_tokens", 0), ("z_threshold", 0.0),
                                       ("scheme", "selfhash")])
def test_settings_are_validated_on_construction_naming_the_field(field, bad):
    with pytest.raises(WatermarkError, match=f"watermark {field}=") as e:
        wm(**{field: bad})
    assert e.value.param == field and "\n" not in str(e.value)


def test_a_short_key_is_refused_and_the_key_never_shows_in_repr():
    with pytest.raises(WatermarkError, match="key"):
        WatermarkSettings(key="short")
    assert KEY not in repr(wm()) and KEY not in repr(SamplingParams(watermark=wm()))
    with pytest.raises(SamplingParamError, match="watermark"):
        SamplingParams(watermark="on")


def test_the_mask_is_a_keyed_deterministic_gamma_fraction():
    ctx = torch.arange(-1, 300)  # every context id, and the pad (h = 1: a (B,) context)
    a, b = green_mask(ctx, 500, wm(context=1)), green_mask(ctx, 500, wm(context=1))
    assert a.shape == (301, 500) and a.dtype == torch.bool and torch.equal(a, b)
    n = a.numel()
    assert abs(a.float().mean().item() - 0.25) < 4 * math.sqrt(0.25 * 0.75 / n)
    other = green_mask(ctx, 500, wm(key=KEY + "x", context=1))
    agree = (a == other).float().mean().item()  # independent lists agree on gamma^2 + (1 - gamma)^2
    assert abs(agree - 0.625) < 0.01 and not torch.equal(a, other)
    half = green_mask(ctx, 500, wm(gamma=0.5, context=1))
    assert abs(half.float().mean().item() - 0.5) < 0.01 and bool((half | ~a).all())  # gamma nests the lists
    # rows of different contexts are not shifted copies: every pair of rows agrees about as often as chance
    rows = a[:64].float()
    same = (rows @ rows.T + (1 - rows) @ (1 - rows).T) / 500
    off = same[~torch.eye(64, dtype=torch.bool)]
    assert off.max() < 0.75 and abs(off.mean().item() - 0.625) < 0.01


def test_the_pairwise_form_agrees_with_the_mask_for_wider_contexts():
    for h in (1, 2, 3):
        s = wm(context=h)
        ctx = torch.randint(-1, V, (400, h), generator=torch.Generator().manual_seed(h))
        tok = torch.randint(0, V, (400,), generator=torch.Generator().manual_seed(10 + h))
        mask = green_mask(ctx, V, s)
        assert torch.equal(mask[torch.arange(400), tok], is_green(ctx, tok, s))
    assert torch.equal(context_rows([[5], [1, 2, 3]], 2), torch.tensor([[-1, 5], [2, 3]]))


def test_apply_watermark_adds_delta_to_green_logits_only_and_delta_0_is_the_identity():
    logits = torch.randn(3, V, generator=torch.Generator().manual_seed(0))
    ctx = torch.tensor([[7], [8], [-1]])
    out = apply_watermark(logits, ctx, wm(delta=2.5, context=1))
    mask = green_mask(ctx, V, wm(context=1))
    assert torch.allclose(out - logits, mask.float() * 2.5)
    assert apply_watermark(logits, ctx, wm(delta=0.0, context=1)) is logits
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        green_mask(ctx, V, wm())  # the default h = 2 needs two ids per row


# --- every path through the loop -----------------------------------------------------------------
def test_with_delta_0_every_path_gives_exactly_the_unwatermarked_tokens(model):
    zero = wm(delta=0.0)
    assert generate(model, 3, zero) == generate(model, 3, None)
    p, p0 = SamplingParams(max_tokens=30, best_of=3, seed=1), SamplingParams(max_tokens=30, best_of=3, seed=1,
                                                                             watermark=zero)
    assert best_of_n(model, PROMPT, p) == best_of_n(model, PROMPT, p0)
    q, q0 = SamplingParams(max_tokens=30, seed=2), SamplingParams(max_tokens=30, seed=2, watermark=zero)
    assert sample_sequences(model, PROMPT, 20, q, eos_id=0) == sample_sequences(model, PROMPT, 20, q0, eos_id=0)


@pytest.mark.parametrize("delta", [2.0, 4.0])
def test_watermarked_samples_are_far_greener_than_gamma_and_unwatermarked_ones_are_not(model, delta):
    for seed in range(3):
        tokens = generate(model, seed, wm(delta=delta))
        marked = detect_ids(tokens, wm(), PROMPT)
        plain = detect_ids(generate(model, seed, None), wm(), PROMPT)
        assert marked.scored_tokens >= 120 and marked.green_fraction > 0.5, marked
        assert marked.z_score > 8 and marked.verdict == "watermarked" and marked.p_value < 1e-12
        assert abs(plain.z_score) < 3 and plain.verdict == "not watermarked", plain
        assert abs(detect_ids(tokens, wm(key=KEY + "?"), PROMPT).z_score) < 3.5  # another key sees no mark


def test_greedy_with_a_watermark_is_deterministic_and_takes_the_argmax_of_the_biased_logits(model):
    s = wm(delta=3.0)
    params = SamplingParams(max_tokens=40, temperature=0, watermark=s)
    out = [t for t, _ in stream_tokens(model, PROMPT, params)]
    assert out == [t for t, _ in stream_tokens(model, PROMPT, params)]
    assert out != [t for t, _ in stream_tokens(model, PROMPT, SamplingParams(max_tokens=40, temperature=0))]
    seq = PROMPT + out
    with torch.no_grad():
        logits = model(torch.tensor([seq[:-1]]))[0]  # (T, V): every position at once, no cache
    for i, tok in enumerate(out):
        pos = len(PROMPT) - 1 + i
        biased = apply_watermark(logits[pos:pos + 1].float(), context_rows([seq[:pos + 1]], s.context), s)
        assert int(biased.argmax()) == tok


def test_best_of_n_beam_search_and_many_sequences_carry_the_mark(model):
    s = wm(delta=3.0)
    for ids, _, _ in best_of_n(model, PROMPT, SamplingParams(max_tokens=120, best_of=3, seed=5, watermark=s)):
        assert detect_ids(ids, s, PROMPT).verdict == "watermarked"
    # beam search loops on a random model (few distinct pairs to score: never a verdict), but its pairs are green
    beams = beam_search(model, PROMPT, SamplingParams(max_tokens=120, num_beams=3, watermark=s))
    d = detect_ids(beams[0][0], s, PROMPT)
    assert d.green_fraction > 0.5 and d.verdict != "not watermarked"
    plain = beam_search(model, PROMPT, SamplingParams(max_tokens=120, num_beams=3))
    assert plain[0][0] != beams[0][0] and detect_ids(plain[0][0], s, PROMPT).verdict != "watermarked"
    seqs = sample_sequences(model, PROMPT, 8, SamplingParams(max_tokens=40, seed=1, watermark=s), eos_id=0)
    greens = [detect_ids(q, s, PROMPT) for q in seqs]
    assert sum(d.green_tokens for d in greens) / sum(d.scored_tokens for d in greens) > 0.5


def test_the_batch_engine_marks_each_row_after_its_own_tokens_exactly_as_in_process(model):
    s = wm(delta=2.0)
    prompts = [[1, 2, 3], [9], [4, 4, 4, 4, 4], [7, 8]]
    params = [SamplingParams(max_tokens=60, temperature=1.0, seed=i) for i in range(4)]
    results = run_engine(BatchEngine(model, max_batch=4, watermark=s), prompts, params)
    for prompt, p, (tokens, reason) in zip(prompts, params, results):
        alone = [t for t, _ in stream_tokens(model, prompt, replace(p, watermark=s))]
        assert tokens == alone and reason == "length"
        assert detect_ids(tokens, s, prompt).green_fraction > 0.5


# --- detection -----------------------------------------------------------------------------------
def test_short_text_is_inconclusive_even_when_every_token_is_green(model):
    s = wm(delta=50.0)  # every sampled token green
    out = generate(model, 0, s, n=20)
    d = detect_ids(out, s, PROMPT)
    assert d.green_fraction == 1.0 and d.z_score > 4 and d.verdict == "inconclusive" and d.scored_tokens < 25


def test_a_repeated_context_and_token_is_scored_once():
    s = wm()
    d = detect_ids([5, 6] * 100, s)
    assert d.total_tokens == 200 and d.scored_tokens == 2 and d.verdict == "inconclusive"
    assert detect_ids([], s).scored_tokens == 0 and detect_ids([], s).p_value == 1.0


def test_z_and_p_follow_the_one_proportion_test():
    z, p = z_test(50, 100, 0.25)
    assert z == pytest.approx(25 / math.sqrt(100 * 0.25 * 0.75)) and p == pytest.approx(0.5 * math.erfc(z / 2**0.5))
    assert z_test(25, 100, 0.25) == (0.0, 0.5)


def test_text_detection_re_encodes_with_the_codec_and_uses_the_prompt_as_context(model):
    codec = CharCodec("".join(chr(ord("A") + i) for i in range(V)))  # 50 characters, one per id
    s = wm(delta=4.0)
    out = generate(model, 1, s)
    text, prompt = codec.decode(PROMPT + out), codec.decode(PROMPT)
    with_prompt = detect_text(text, codec, s, prompt)
    assert with_prompt == detect_ids(out, s, PROMPT) and with_prompt.total_tokens == 200
    assert detect_text(text, codec, s).total_tokens == 204  # no prompt known: all of it, first token unscored


# --- the settings file and the records beside outputs --------------------------------------------
def test_the_default_settings_file_is_made_once_owner_only_with_a_random_key(home):
    a = load_watermark(create=True)
    assert a.path == home / "watermark.json" and stat.S_IMODE(os.stat(a.path).st_mode) == 0o600
    assert len(a.settings.key) == 64 and a.codecs == {}
    assert load_watermark().settings == a.settings  # read back, not remade
    data = json.loads(a.path.read_text())
    assert data["version"] == 1 and data["scheme"] == a.settings.scheme and {"gamma", "delta", "context"} <= set(data)


def test_detection_never_makes_settings_and_a_bad_file_is_one_line(tmp_path):
    with pytest.raises(GenforgeError, match="no watermark settings at"):
        load_watermark(tmp_path / "none.json")
    for body, match in (("{", "not a readable"), ('{"version": 9}', "version-1"),
                        ('{"version": 1, "key": "' + KEY + '", "gamma": 2, "codecs": {}}', "gamma=2")):
        (tmp_path / "bad.json").write_text(body)
        with pytest.raises(GenforgeError, match=match) as e:
            load_watermark(tmp_path / "bad.json")
        assert "\n" not in str(e.value)


def test_detection_refuses_other_settings_or_another_codec_naming_both(tmp_path):
    a, b = CharCodec("abcdefgh"), CharCodec("abcdefgi")
    mine = load_watermark(tmp_path / "mine.json", create=True)
    mine.register(a, "model-a")
    other = load_watermark(tmp_path / "other.json", create=True)
    out = tmp_path / "out.txt"
    assert write_record(out, mine, a, "model-a", "ab") == tmp_path / "out.txt.watermark.json"
    rec = read_record(out)
    assert rec["model"] == "model-a" and mine.settings.key not in json.dumps(rec)
    check_record(rec, mine, a, "model-a", str(out))  # the same settings and codec: fine
    with pytest.raises(GenforgeError) as e:
        check_record(rec, other, a, "model-a", str(out))
    msg = str(e.value)
    assert mine.public()["key_id"] in msg and other.public()["key_id"] in msg and "\n" not in msg
    with pytest.raises(GenforgeError) as e:
        check_record(rec, mine, b, "model-b", str(out))
    assert codec_fingerprint(a) in str(e.value) and codec_fingerprint(b) in str(e.value)
    with pytest.raises(GenforgeError, match="never watermarked through model-b's codec"):
        mine.check_codec(b, "model-b")
    assert codec_fingerprint(a) != codec_fingerprint(b)


# --- the CLI and chat ----------------------------------------------------------------------------
def strong_settings(path, delta: float = 4.0, key: str = KEY, context: int = 1) -> str:
    """A settings file with a known key and a delta the char model carries at 200 tokens."""
    path.write_text(json.dumps({"version": 1, "key": key, "gamma": 0.25, "delta": delta, "context": context,
                                "codecs": {}}))
    return str(path)


def test_generate_watermark_then_detect(tmp_path, capsys):
    settings = strong_settings(tmp_path / "wm.json")
    out, plain = tmp_path / "marked.txt", tmp_path / "plain.txt"
    common = ["generate", "--max-tokens", "200", "--temperature", "1", "--seed", "0"]
    assert main([*common, "--watermark", "--watermark-settings", settings, "--out", str(out)]) == 0
    assert (tmp_path / "marked.txt.watermark.json").is_file()
    assert main([*common, "--out", str(plain)]) == 0
    capsys.readouterr()
    assert main(["detect", str(out), "--watermark-settings", settings, "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["verdict"] == "watermarked" and found["z_score"] > 4 and KEY not in json.dumps(found)
    assert main(["detect", str(plain), "--watermark-settings", settings]) == 0
    assert capsys.readouterr().out.splitlines()[0].endswith(": not watermarked")
    other = strong_settings(tmp_path / "other.json", key=KEY + "-other")
    for argv, match in ((["detect", str(out), "--watermark-settings", other], "key_id="),
                        (["detect", str(out), "--watermark-settings", settings, "--model", "moses-smiles"],
                         "encodes with smiles:"),
                        (["detect", str(tmp_path / "missing.txt"), "--watermark-settings", settings], "does not exist"),
                        (["generate", "--watermark-settings", settings], "applies with --watermark")):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("genforge: error:") and match in err and "\n" not in err, err
    (tmp_path / "empty.txt").write_text("\n")
    assert main(["detect", str(tmp_path / "empty.txt"), "--watermark-settings", settings]) == 2
    assert "is empty" in capsys.readouterr().err


def test_molecules_are_watermarked_and_detected_as_a_file(tmp_path, capsys):
    pytest.importorskip("rdkit")
    # SMILES have 26 tokens: with h = 1 most (previous, next) pairs repeat and are scored once, so a file of
    # molecules is found through a wider context (h = 4: ~20x more distinct pairs)
    settings = strong_settings(tmp_path / "wm.json", context=4)
    out = tmp_path / "mols.smi"
    assert main(["generate", "--model", "moses-smiles", "--n", "40", "--seed", "1", "--watermark",
                 "--watermark-settings", settings, "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["detect", str(out), "--watermark-settings", settings, "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["model"] == "moses-smiles" and found["verdict"] == "watermarked", found


def test_chat_with_watermark_marks_every_reply(tmp_path):
    tm = genforge.load("shakespeare-chat")
    settings = strong_settings(tmp_path / "wm.json", delta=40.0)  # every sampled token green
    out = io.StringIO()
    lines = iter(["How now, good friend?", "What news from Rome?", "Speak, I pray thee.", "Who goes there?", "/quit"])
    run_chat(tm, params={"seed": 0, "max_tokens": 80}, input_fn=lambda _: next(lines), output=out, watermark=True,
             watermark_settings=settings)
    text = out.getvalue()
    assert "replies are watermarked" in text
    replies = [line[18:] for line in text.splitlines() if line.startswith("shakespeare-chat> ")]
    found = [detect_text(r, tm.codec, load_watermark(settings).settings) for r in replies]
    assert len(replies) == 4 and sum(d.scored_tokens for d in found) >= 10, replies
    assert all(d.green_tokens == d.scored_tokens for d in found), (replies, found)
    assert all(isinstance(d, Detection) for d in found)
    from genforge.cli import build_parser

    args = build_parser().parse_args(["chat", "--watermark", "--watermark-settings", settings])
    assert args.watermark is True and args.watermark_settings == settings
    with pytest.raises(GenforgeError, match="applies with --watermark"):
        run_chat(tm, input_fn=lambda _: "/quit", output=io.StringIO(), watermark_settings=settings)
