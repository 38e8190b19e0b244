"""`genforge serve --safety`: blocked prompts and messages are refused before any work, blocked output is cut
(finish_reason "content_filter") and never streamed, and every refusal is logged.

One real server on loopback serves the bundled ``shakespeare-char`` with an input blocklist and an output
blocklist holding words the model is sure to say: the last longer word of the first line of its greedy
completion of "ROMEO.\\n" and of its greedy chat reply to "How now?" (both computed here, in-process).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
from serving import running_server, sse, stream_text

import genforge
from genforge.cli import main
from genforge.codecs.chat_template import template_for
from genforge.safety.filters import SafetySettings
from genforge.serve.app import ServeSettings

MODEL = "shakespeare-char"
REFUSAL = "Refused by this server's content policy."
PROMPT, CHAT = "ROMEO.\n", [{"role": "user", "content": "How now?"}]


def blocked_word(text: str) -> str:
    words = [w for w in re.findall(r"[A-Za-z]+", text.split("\n")[0]) if len(w) >= 4]
    if not words:
        pytest.skip(f"the greedy text {text!r} has no word of 4 letters on its first line")
    return words[-1]


def cut_before(text: str, word: str) -> str:
    m = re.search(rf"(?<![A-Za-z0-9]){word}(?![A-Za-z0-9])", text, re.IGNORECASE)
    assert m is not None
    return text[:m.start()]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tm = genforge.load(MODEL)
    template = template_for(tm.meta)
    greedy = tm.generate(PROMPT, max_tokens=80, temperature=0)
    reply = tm.generate(template.render(CHAT), max_tokens=60, temperature=0, stop=list(template.stop_strings()))
    words = (blocked_word(greedy), blocked_word(reply))
    log = tmp_path_factory.mktemp("safety") / "safety.jsonl"
    settings = ServeSettings(models=[MODEL], max_n=2, safety=SafetySettings(
        input_blocklist=("murder", "poison the king"), output_blocklist=words, refusal_message=REFUSAL,
        log_path=str(log)))
    with running_server(settings, {MODEL: tm}) as (app, url), httpx.Client(base_url=url, timeout=60) as client:
        yield {"client": client, "greedy": greedy, "reply": reply, "words": words, "log": log}


def refusal(r: httpx.Response, param: str) -> None:
    assert r.status_code == 400, r.text
    assert r.json() == {"error": {"message": REFUSAL, "type": "invalid_request_error", "param": param,
                                  "code": "content_policy_violation"}}


EVASIVE = ["Let us murder him", "MURDER most foul", "m u r d e r", "m.u.r.d.e.r", "mu\u200brder",
           "murd\u0435r",  # Cyrillic ie: outside the model's vocabulary, yet refused as a policy violation first
           "Go, p-o-i-s-o-n the  king!"]


@pytest.mark.parametrize("prompt", EVASIVE)
def test_a_blocked_prompt_is_refused_in_openai_shape(setup, prompt):
    c = setup["client"]
    refusal(c.post("/v1/completions", json={"model": MODEL, "prompt": prompt, "max_tokens": 5}), "prompt")
    refusal(c.post("/v1/completions", json={"model": MODEL, "prompt": [prompt], "stream": True}), "prompt")


def test_every_chat_message_is_checked(setup):
    c = setup["client"]
    messages = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Good morrow."},
                {"role": "assistant", "content": "Speak, m u r d e r."}, {"role": "user", "content": "Well?"}]
    refusal(c.post("/v1/chat/completions", json={"model": MODEL, "messages": messages, "max_tokens": 5}), "messages")
    ok = c.post("/v1/chat/completions", json={"model": MODEL, "messages": messages[:2], "max_tokens": 5})
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize("prompt", ["The murderer fled.", "Remurder is no word", "I must poison the kingdom's rats"])
def test_innocent_prompts_pass(setup, prompt):
    r = setup["client"].post("/v1/completions", json={"model": MODEL, "prompt": prompt, "max_tokens": 3})
    assert r.status_code == 200, r.text


def test_blocked_output_is_cut_with_content_filter_and_not_leaked_by_logprobs(setup):
    c, word = setup["client"], setup["words"][0]
    want = cut_before(setup["greedy"], word)
    r = c.post("/v1/completions", json={"model": MODEL, "prompt": PROMPT, "max_tokens": 80, "temperature": 0,
                                        "logprobs": 1}).json()
    choice = r["choices"][0]
    assert choice["finish_reason"] == "content_filter" and choice["text"] == want
    assert word.lower() not in choice["text"].lower()
    assert "".join(choice["logprobs"]["tokens"]) == want  # char tokens: the cut span is not in them either


def test_streaming_never_emits_the_blocked_span(setup):
    c, word = setup["client"], setup["words"][0]
    body = {"model": MODEL, "prompt": PROMPT, "max_tokens": 80, "temperature": 0, "stream": True, "logprobs": 1}
    with c.stream("POST", "/v1/completions", json=body) as r:
        assert r.status_code == 200
        chunks = sse(r)
    assert chunks[-1] == "[DONE]"
    assert stream_text(chunks) == cut_before(setup["greedy"], word)
    finishes = [ch["finish_reason"] for c_ in chunks if isinstance(c_, dict) for ch in c_["choices"]
                if ch["finish_reason"]]
    assert finishes == ["content_filter"]
    streamed_tokens = "".join(t for c_ in chunks if isinstance(c_, dict) for ch in c_["choices"]
                              for t in ((ch.get("logprobs") or {}).get("tokens") or []))
    assert word.lower() not in json.dumps(chunks).lower() and word.lower() not in streamed_tokens.lower()


def test_each_choice_is_cut_on_its_own(setup):
    c, word = setup["client"], setup["words"][0]
    want = cut_before(setup["greedy"], word)
    r = c.post("/v1/completions", json={"model": MODEL, "prompt": PROMPT, "max_tokens": 80, "temperature": 0,
                                        "n": 2})
    assert [(ch["index"], ch["text"], ch["finish_reason"]) for ch in r.json()["choices"]] == \
        [(0, want, "content_filter"), (1, want, "content_filter")]
    body = {"model": MODEL, "prompt": PROMPT, "max_tokens": 80, "temperature": 0, "n": 2, "stream": True}
    with c.stream("POST", "/v1/completions", json=body) as resp:
        chunks = sse(resp)
    assert [stream_text(chunks, i) for i in (0, 1)] == [want, want] and chunks[-1] == "[DONE]"


@pytest.mark.parametrize("stream", [False, True])
def test_chat_replies_are_filtered_too(setup, stream):
    c, word = setup["client"], setup["words"][1]
    body = {"model": MODEL, "messages": CHAT, "max_tokens": 60, "temperature": 0, "stream": stream}
    if stream:
        with c.stream("POST", "/v1/chat/completions", json=body) as r:
            chunks = sse(r)
        text = stream_text(chunks)
        finish = [ch["finish_reason"] for c_ in chunks if isinstance(c_, dict) for ch in c_["choices"]
                  if ch["finish_reason"]]
    else:
        choice = c.post("/v1/chat/completions", json=body).json()["choices"][0]
        text, finish = choice["message"]["content"], [choice["finish_reason"]]
    assert text == cut_before(setup["reply"], word) and finish == ["content_filter"]


def test_text_that_ends_before_the_blocked_word_comes_out_whole(setup):
    """What the guard holds back is let out at the end: streamed and whole texts equal the unfiltered one."""
    c, greedy = setup["client"], setup["greedy"]
    k = len(cut_before(greedy, setup["words"][0])) - 1  # one character short of the blocked word
    body = {"model": MODEL, "prompt": PROMPT, "max_tokens": k, "temperature": 0}
    whole = c.post("/v1/completions", json=body).json()["choices"][0]
    with c.stream("POST", "/v1/completions", json={**body, "stream": True}) as r:
        streamed = stream_text(sse(r))
    assert whole["text"] == streamed == greedy[:k] and whole["finish_reason"] == "length"


def test_every_refusal_is_logged(setup):
    c = setup["client"]
    c.post("/v1/completions", json={"model": MODEL, "prompt": "a m-u-r-d-e-r", "max_tokens": 3})
    c.post("/v1/completions", json={"model": MODEL, "prompt": PROMPT, "max_tokens": 80, "temperature": 0})
    lines = [json.loads(x) for x in setup["log"].read_text().splitlines()]
    assert all(set(x) == {"time", "direction", "rule", "model", "sha256", "excerpt"} for x in lines)
    assert all(x["model"] == MODEL for x in lines)
    inputs = [x for x in lines if x["direction"] == "input"]
    outputs = [x for x in lines if x["direction"] == "output"]
    assert any(x["rule"] == "blocklist: murder" and "m-u-r-d-e-r" in x["excerpt"] for x in inputs)
    assert any(x["rule"] == f"blocklist: {setup['words'][0]}" for x in outputs)
    health = c.get("/health").json()
    assert health["inflight"] == 0  # refused and cut requests freed their slots


def test_a_bad_safety_file_is_one_line_at_startup(tmp_path: Path, capsys):
    bad = tmp_path / "safety.toml"
    bad.write_text("[safety]\npatterns = ['(unclosed']\n")
    for spec, needle in ((str(bad), "not a valid regular expression"), (str(tmp_path / "none.toml"), "not found")):
        assert main(["serve", "--model", "no-such-model", "--safety", spec]) == 2  # before any model loads
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("genforge: error: ") and needle in err[0], err
    assert ServeSettings(safety="default").safety_filter is not None
