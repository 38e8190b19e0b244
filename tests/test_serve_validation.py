# ruff: noqa: F811  (pytest fixtures imported from test_serve are redefined as arguments by design)
"""The server refuses bad requests with OpenAI error bodies before any model work (split from test_serve)."""

from __future__ import annotations

import json
import os
import sys

import pytest
from test_serve import (  # noqa: F401 (fixtures are used by name)
    CTX,
    MAX_BODY,
    MODEL,
    assert_openai_error,
    chat,
    client,
    completion,
    engine,
    server,
    sse,
    stream_text,
    tm,
    wait_idle,
)

from genforge.store import BUNDLED
from genforge.types import MAX_STOP, SamplingParamError, SamplingParams

BAD_COMPLETIONS = {
    "max_tokens=0": completion(max_tokens=0),
    "max_tokens<0": completion(max_tokens=-5),
    "max_tokens float": completion(max_tokens=1.5),
    "max_tokens boolean": completion(max_tokens=True),
    "n boolean": completion(n=True),
    "seed boolean": completion(seed=False),
    "temperature boolean": completion(temperature=True),
    "logprobs boolean": completion(logprobs=True),
    "temperature<0": completion(temperature=-0.1),
    "temperature>2": completion(temperature=2.01),
    "top_p=0": completion(top_p=0),
    "top_p>1": completion(top_p=1.5),
    "presence_penalty>2": completion(presence_penalty=2.5),
    "frequency_penalty<-2": completion(frequency_penalty=-3),
    "n=0": completion(n=0),
    "n over the cap": completion(n=5),
    "n far over": completion(n=10_000),
    "stop empty": completion(stop=""),
    "stop list with empty": completion(stop=["\n", ""]),
    "stop too many": completion(stop=[f"s{i}" for i in range(MAX_STOP + 1)]),
    "stop not strings": completion(stop=[1, 2]),
    "empty prompt": completion(prompt=""),
    "empty prompt list": completion(prompt=[]),
    "prompt outside vocabulary": completion(prompt="\u65e5\u672c"),
    "prompt wrong type": completion(prompt={"text": "a"}),
    "unknown field": completion(temprature=0.5),
    "logprobs > 5": completion(logprobs=6),
    "stream_options unknown": completion(stream=True, stream_options={"include": True}),
    "model missing": {"prompt": "a", "max_tokens": 1},
    "model empty": completion(model=""),
}
BAD_CHATS = {
    "messages empty": chat(messages=[]),
    "messages not a list": chat(messages="hello"),
    "role unknown": chat(messages=[{"role": "tool", "content": "x"}]),
    "role missing": chat(messages=[{"content": "x"}]),
    "content null": chat(messages=[{"role": "user", "content": None}]),
    "content parts": chat(messages=[{"role": "user", "content": [{"type": "text", "text": "x"}]}]),
    "content blank": chat(messages=[{"role": "user", "content": "  \n\n "}]),
    "last is assistant": chat(messages=[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]),
    "system not first": chat(messages=[{"role": "user", "content": "a"}, {"role": "system", "content": "b"},
                                       {"role": "user", "content": "c"}]),
    "message extra field": chat(messages=[{"role": "user", "content": "a", "tool_calls": []}]),
    "temperature>2": chat(temperature=3),
    "top_logprobs>20": chat(logprobs=True, top_logprobs=21),
    "top_logprobs boolean": chat(logprobs=True, top_logprobs=True),
    "max_tokens over context": chat(max_tokens=CTX),
}
BAD_EMBEDDINGS = {
    "input empty list": {"model": MODEL, "input": []},
    "input empty string": {"model": MODEL, "input": ""},
    "input too many": {"model": MODEL, "input": ["a"] * 65},
    "input outside vocabulary": {"model": MODEL, "input": "\u2603"},
    "encoding unknown": {"model": MODEL, "input": "a", "encoding_format": "int8"},
}
RAW_NON_FINITE = [b'{"model": "shakespeare-char", "prompt": "a", "temperature": NaN}',
                  b'{"model": "shakespeare-char", "prompt": "a", "temperature": Infinity}',
                  b'{"model": "shakespeare-char", "prompt": "a", "temperature": 1e999}',
                  b'{"model": "shakespeare-char", "prompt": "a", "top_p": NaN}',
                  b'{"model": "shakespeare-char", "prompt": "a", "presence_penalty": -Infinity}']


def test_every_invalid_parameter_is_a_400_before_any_model_work(server, client, engine):
    wait_idle(server[0])
    steps = engine.steps
    cases = ([("/v1/completions", k, json.dumps(v).encode()) for k, v in BAD_COMPLETIONS.items()]
             + [("/v1/chat/completions", k, json.dumps(v).encode()) for k, v in BAD_CHATS.items()]
             + [("/v1/embeddings", k, json.dumps(v).encode()) for k, v in BAD_EMBEDDINGS.items()]
             + [("/v1/completions", "non-finite", raw) for raw in RAW_NON_FINITE])
    for path, name, body in cases:
        variants = [body]
        if path != "/v1/embeddings":  # the same mistakes with stream=true must not open an event stream
            variants.append(body[:-1] + b', "stream": true}' if name == "non-finite"
                            else json.dumps({**json.loads(body), "stream": True}).encode()
                            if isinstance(json.loads(body), dict) else body)
        for data in variants:
            r = client.post(path, content=data, headers={"content-type": "application/json"})
            assert not r.headers["content-type"].startswith("text/event-stream"), name
            assert_openai_error(r, 400)
    assert engine.steps == steps and engine.load == 0 and server[0].state.genforge.inflight == 0


def test_context_overflow_message_states_the_numbers(client):
    prompt = "ROMEO.\n" * 30  # 210 characters = 210 tokens
    r = client.post("/v1/completions", json=completion(prompt=prompt, max_tokens=60))
    err = assert_openai_error(r, 400, "context_length_exceeded")
    assert err["param"] == "max_tokens"
    for number in ("256", "210", "60", "270"):
        assert number in err["message"], err["message"]
    # exactly the context is fine
    r = client.post("/v1/completions", json=completion(prompt=prompt, max_tokens=46))
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 46
    r = client.post("/v1/completions", json=completion(prompt="x" * CTX, max_tokens=None))
    assert_openai_error(r, 400, "context_length_exceeded")


def test_a_vanishing_temperature_is_greedy_not_a_500(client):
    """Found by schemathesis: temperature=5e-324 made logits / T overflow and the sampler fail (500)."""
    greedy = client.post("/v1/completions", json=completion(temperature=0)).json()["choices"][0]["text"]
    for t in (5e-324, 1e-40, 1e-9):
        r = client.post("/v1/completions", json=completion(temperature=t, seed=1))
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["text"] == greedy
        with client.stream("POST", "/v1/completions", json=completion(temperature=t, stream=True)) as resp:
            chunks = sse(resp)
        assert stream_text(chunks) == greedy and chunks[-1] == "[DONE]"


@pytest.mark.parametrize("body, ctype, status", [
    (b"[1, 2]", "application/json", 400),
    (b'"text"', "application/json", 400),
    (b"null", "application/json", 400),
    (b"42", "application/json", 400),
    (b"{not json", "application/json", 400),
    (b"", "application/json", 400),
    (b"\xff\xfe{", "application/json", 400),
    (b'{"model": "shakespeare-char", "prompt": "a"}', "text/plain", 415),
    (b'{"model": "shakespeare-char", "prompt": "a"}', None, 415),
    (b'{"model": "shakespeare-char", "prompt": "a"}', "application/x-www-form-urlencoded", 415),
])
def test_bodies_that_are_not_json_objects(client, body, ctype, status):
    headers = {"content-type": ctype} if ctype else {}
    for path in ("/v1/completions", "/v1/chat/completions", "/v1/embeddings"):
        assert_openai_error(client.post(path, content=body, headers=headers), status)


def test_oversized_bodies_are_413_declared_or_chunked(client):
    big = json.dumps(completion(prompt="a" * (MAX_BODY + 10))).encode()
    assert_openai_error(client.post("/v1/completions", content=big, headers={"content-type": "application/json"}),
                        413, "request_too_large")

    def chunked():  # no content-length: the guard counts the bytes as they arrive
        for _ in range(MAX_BODY // 4096 + 2):
            yield b" " * 4096

    r = client.post("/v1/chat/completions", content=chunked(), headers={"content-type": "application/json"})
    assert r.request.headers.get("transfer-encoding") == "chunked"
    assert_openai_error(r, 413, "request_too_large")


_AUDIT: list | None = None  # paths touched while a probe runs (None: not recording)
_HOOKED = False
MARKER = "genforge-escape-probe"


def _audit(event: str, args: tuple) -> None:
    if _AUDIT is not None and event in ("open", "os.listdir", "os.scandir", "os.mkdir", "os.remove", "os.rename"):
        for a in args:
            if isinstance(a, (str, bytes, os.PathLike)) and MARKER in os.fsdecode(a):
                _AUDIT.append((event, a))


def test_model_names_never_escape_to_the_filesystem(client, monkeypatch):
    global _AUDIT, _HOOKED
    if not _HOOKED:  # audit hooks cannot be removed: one, idle (a None check) outside this test
        sys.addaudithook(_audit)
        _HOOKED = True
    import genforge.pipelines as pipelines
    import genforge.store as registry

    def forbidden(*a, **k):
        raise AssertionError(f"a request made the server resolve or load a model: {a}")

    monkeypatch.setattr(registry, "resolve_model", forbidden)
    monkeypatch.setattr(pipelines, "load", forbidden)
    names = ["../x", f"../{MARKER}", f"../../{MARKER}/model", f"/tmp/{MARKER}", "/etc/passwd",
             f"%2e%2e/{MARKER}", f"%2e%2e%2f{MARKER}", f"..\\{MARKER}", f"~/{MARKER}", f"./{MARKER}",
             str(BUNDLED / MODEL), f"{MODEL}/../{MODEL}", f"./{MODEL}", MODEL.upper(), f"{MODEL}\x00"]
    _AUDIT = []
    try:
        for name in names:
            for path, body in (("/v1/completions", completion(model=name)),
                               ("/v1/chat/completions", chat(model=name)),
                               ("/v1/embeddings", {"model": name, "input": "a"})):
                err = assert_openai_error(client.post(path, json=body), 404, "model_not_found")
                assert err["param"] == "model"
        r = client.get(f"/v1/models/..%2f..%2f{MARKER}")
        assert_openai_error(r, 404)
        touched = list(_AUDIT)
    finally:
        _AUDIT = None
    assert touched == []




@pytest.mark.parametrize("name,bad", [("temperature", 2.01), ("temperature", -0.1), ("top_p", 0.0), ("top_p", 1.5),
                                      ("presence_penalty", 2.5), ("frequency_penalty", -3.0), ("max_tokens", 0),
                                      ("seed", 2**64)])
def test_a_sampling_value_outside_the_one_rule_is_a_400_naming_it(client, name, bad):
    """The server does not re-implement ranges: SamplingParams' own message, with its parameter as ``param``."""
    with pytest.raises(SamplingParamError) as want:
        SamplingParams(**{name: bad})
    for path, body in (("/v1/completions", completion(**{name: bad})), ("/v1/chat/completions", chat(**{name: bad}))):
        err = assert_openai_error(client.post(path, json=body), 400, "invalid_value")
        assert err["param"] == name and err["message"] == str(want.value)


def test_the_openapi_schema_shows_the_one_rule_and_default(client):
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    for request in ("CompletionRequest", "ChatRequest"):
        props = schemas[request]["properties"]
        assert props["temperature"]["minimum"] == 0 and props["temperature"]["maximum"] == 2
        assert props["temperature"]["default"] == SamplingParams().temperature
        assert props["top_p"]["exclusiveMinimum"] == 0 and props["top_p"]["maximum"] == 1
        assert "as many as fit" in props["max_tokens"]["description"]
