"""Log-probabilities the server reports are the model's, streamed or not, in OpenAI's two shapes.

The bundled character model has one character per token, so each reported token is one character
and its log-probability can be recomputed with one forward pass over prompt + generated text.
Also here: the HTTP details around those responses (a usage chunk's header fields, a JSON
content-type with a charset parameter).
"""
from __future__ import annotations

import math

import httpx
import pytest
import torch
from serving import running_server, sse

import genforge
from genforge.serve.app import ServeSettings

MODEL = "shakespeare-char"
PROMPT = "JULIET.\nO Romeo, Romeo, wherefore"
N = 24


@pytest.fixture(scope="module")
def tm():
    return genforge.load(MODEL)


@pytest.fixture(scope="module")
def client(tm):
    with running_server(ServeSettings(models=[MODEL]), {MODEL: tm}) as (_, url), \
            httpx.Client(base_url=url, timeout=120) as c:
        yield c


def reference_logprobs(tm, prompt: str, completion: str) -> torch.Tensor:
    """(len(completion), V) log-softmax of the raw logits before each completion token."""
    ids = tm.codec.encode(prompt + completion)
    with torch.inference_mode():
        logits = tm.model(torch.tensor([ids]))[0].float()
    start = len(tm.codec.encode(prompt))
    return torch.log_softmax(logits[start - 1: len(ids) - 1], dim=-1)


def completion_logprobs(client: httpx.Client, stream: bool, **kw) -> tuple[str, dict]:
    body = {"model": MODEL, "prompt": PROMPT, "max_tokens": N, "temperature": 0.9, "seed": 11, "logprobs": 3, **kw}
    if not stream:
        r = client.post("/v1/completions", json=body)
        assert r.status_code == 200, r.text
        ch = r.json()["choices"][0]
        return ch["text"], ch["logprobs"]
    with client.stream("POST", "/v1/completions", json={**body, "stream": True}) as r:
        assert r.status_code == 200
        chunks = [c for c in sse(r) if isinstance(c, dict)]
    text, merged = "", {"tokens": [], "token_logprobs": [], "top_logprobs": []}
    for c in chunks:
        ch = c["choices"][0]
        text += ch["text"]
        if ch["logprobs"] is not None:
            for key in merged:
                merged[key] += ch["logprobs"][key]
    return text, merged


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_completion_logprobs_are_the_models_raw_log_softmax(client, tm, stream: bool):
    text, lp = completion_logprobs(client, stream)
    assert "".join(lp["tokens"]) == text and len(lp["tokens"]) == len(text) > 0
    ref = reference_logprobs(tm, PROMPT, text)
    for i, ch in enumerate(text):
        tid = tm.codec.encode(ch)[0]
        assert math.isclose(lp["token_logprobs"][i], float(ref[i, tid]), abs_tol=1e-4), i
        top = lp["top_logprobs"][i]
        best = torch.topk(ref[i], 3)
        assert len(top) == 3
        assert sorted(top.values(), reverse=True) == pytest.approx(best.values.tolist(), abs=1e-4)
        assert set(top) == {tm.codec.decode([int(t)]) for t in best.indices}


def test_streamed_and_whole_logprobs_agree_token_for_token(client):
    whole_text, whole = completion_logprobs(client, False)
    streamed_text, streamed = completion_logprobs(client, True)
    assert streamed_text == whole_text
    assert streamed["tokens"] == whole["tokens"]
    assert streamed["token_logprobs"] == pytest.approx(whole["token_logprobs"], abs=1e-6)
    assert streamed["top_logprobs"] == whole["top_logprobs"]


def test_completion_logprobs_zero_gives_the_chosen_tokens_only(client, tm):
    text, lp = completion_logprobs(client, False, logprobs=0, temperature=0)
    assert lp["top_logprobs"] is None and len(lp["token_logprobs"]) == len(text)
    ref = reference_logprobs(tm, PROMPT, text)
    assert lp["token_logprobs"] == pytest.approx(ref.max(dim=-1).values.tolist(), abs=1e-4)  # greedy: the max


def chat_logprobs(client: httpx.Client, stream: bool) -> tuple[str, list]:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Speak, Juliet."}], "max_tokens": 16,
            "temperature": 0.8, "seed": 5, "logprobs": True, "top_logprobs": 2}
    if not stream:
        r = client.post("/v1/chat/completions", json=body)
        assert r.status_code == 200, r.text
        ch = r.json()["choices"][0]
        return ch["message"]["content"], ch["logprobs"]["content"]
    with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as r:
        assert r.status_code == 200
        chunks = [c for c in sse(r) if isinstance(c, dict)]
    text, content = "", []
    for c in chunks:
        for ch in c["choices"]:
            text += (ch.get("delta") or {}).get("content") or ""
            if ch.get("logprobs"):
                content += ch["logprobs"]["content"]
    return text, content


def test_chat_logprobs_stream_like_whole_responses_in_the_chat_shape(client):
    text, content = chat_logprobs(client, False)
    s_text, s_content = chat_logprobs(client, True)
    assert s_text == text and text
    assert [e["token"] for e in s_content] == [e["token"] for e in content]
    assert [e["logprob"] for e in s_content] == pytest.approx([e["logprob"] for e in content], abs=1e-6)
    for e in content:
        assert e["bytes"] == list(e["token"].encode())
        alts = e["top_logprobs"]
        assert len(alts) == 2 and alts[0]["logprob"] >= alts[1]["logprob"]
        assert all(a["bytes"] == list(a["token"].encode()) for a in alts)
        assert e["logprob"] <= alts[0]["logprob"] + 1e-6  # nothing beats the best alternative
        if e["logprob"] >= alts[1]["logprob"] - 1e-6:  # in the top two: listed there with the same value
            assert any(a["token"] == e["token"] and math.isclose(a["logprob"], e["logprob"], abs_tol=1e-5)
                       for a in alts)
    assert "".join(e["token"] for e in content) == text


def test_the_usage_chunk_carries_the_same_header_fields_as_the_others(client):
    body = {"model": MODEL, "prompt": PROMPT, "max_tokens": 5, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    with client.stream("POST", "/v1/completions", json=body) as r:
        chunks = [c for c in sse(r) if isinstance(c, dict)]
    heads = {(c["id"], c["object"], c["created"], c["model"]) for c in chunks}
    assert len(heads) == 1 and chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == 5


def test_a_json_content_type_with_a_charset_is_accepted(client):
    r = client.post("/v1/completions", content=b'{"model": "%s", "prompt": "ROMEO.", "max_tokens": 3}' % MODEL.encode(),
                    headers={"content-type": "Application/JSON; charset=utf-8"})
    assert r.status_code == 200, r.text
    r = client.post("/v1/completions", content=b"{}", headers={"content-type": "text/plain; charset=utf-8"})
    assert r.status_code == 415 and "text/plain" in r.json()["error"]["message"]
