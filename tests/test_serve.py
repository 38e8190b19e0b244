"""`genforge serve`: validation, error bodies, streaming, stop strings, batching and the openai client.

One real server (uvicorn in a background thread, on a pre-bound loopback socket) serves the whole
module; it shares its ``TextModel`` with the in-process reference generations. Reliability under
load, auth, SIGTERM and fuzzing are in ``test_serve_reliability.py``.
"""
from __future__ import annotations

import concurrent.futures
import math
import time

import httpx
import pytest
from serving import running_server, sse, stream_text

import genforge
from genforge.codecs.chat_template import template_for
from genforge.serve.app import ServeSettings
from genforge.types import sampling_defaults

MODEL = "shakespeare-char"
CTX = 256
MAX_BODY = 64 * 1024
ERROR_KEYS = {"message", "type", "param", "code"}


# --- helpers -------------------------------------------------------------------------------------
def assert_openai_error(r: httpx.Response, status: int, code: str | None = None) -> dict:
    assert r.status_code == status, (r.status_code, r.text[:500])
    assert r.headers["content-type"].startswith("application/json"), r.headers["content-type"]
    assert "Traceback" not in r.text
    err = r.json()["error"]
    assert set(err) == ERROR_KEYS and isinstance(err["message"], str) and err["message"]
    if code is not None:
        assert err["code"] == code, err
    return err


def wait_idle(app, timeout: float = 20.0) -> None:
    """Until /health's inflight is 0 and the engine holds no rows (earlier tests' runs are done)."""
    state = app.state.genforge
    deadline = time.monotonic() + timeout
    while state.inflight or state.models[MODEL].engine.load:
        assert time.monotonic() < deadline, "server did not go idle"
        time.sleep(0.02)


# --- fixtures ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tm():
    return genforge.load(MODEL)


@pytest.fixture(scope="module")
def server(tm):
    settings = ServeSettings(models=[MODEL], max_concurrent=32, max_batch=16, max_n=4, max_body=MAX_BODY)
    with running_server(settings, {MODEL: tm}) as (app, url):
        yield app, url


@pytest.fixture()
def client(server):
    app, url = server
    with httpx.Client(base_url=url, timeout=60) as c:
        yield c


@pytest.fixture()
def engine(server):
    return server[0].state.genforge.models[MODEL].engine


def completion(**kw) -> dict:
    return {"model": MODEL, "prompt": "ROMEO.\n", "max_tokens": 8, **kw}


def chat(**kw) -> dict:
    return {"model": MODEL, "messages": [{"role": "user", "content": "How now?"}], "max_tokens": 8, **kw}


# --- validation before any work --------------------------------------------------------------------
# --- streaming --------------------------------------------------------------------------------------
def test_stream_at_temperature_0_equals_the_non_streamed_text_and_usage_comes_last(client, tm):
    for path, body in (("/v1/completions", completion(max_tokens=40, temperature=0)),
                       ("/v1/chat/completions", chat(max_tokens=40, temperature=0))):
        full = client.post(path, json=body).json()
        with client.stream("POST", path, json={**body, "stream": True,
                                               "stream_options": {"include_usage": True}}) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            chunks = sse(r)
        assert chunks[-1] == "[DONE]"
        usage_chunk = chunks[-2]
        assert usage_chunk["choices"] == [] and usage_chunk["usage"] == full["usage"]
        assert all(c["usage"] is None for c in chunks[:-2])
        choice = full["choices"][0]
        text = choice["text"] if path == "/v1/completions" else choice["message"]["content"]
        assert stream_text(chunks) == text
        reasons = [ch["finish_reason"] for c in chunks[:-2] for ch in c["choices"] if ch["finish_reason"]]
        assert reasons == [choice["finish_reason"]]
    # and the server's greedy text is the in-process one
    ref = tm.generate("ROMEO.\n", max_tokens=40, temperature=0)
    assert client.post("/v1/completions", json=completion(max_tokens=40, temperature=0)).json()[
        "choices"][0]["text"] == ref
    # without include_usage, no chunk carries a usage key
    with client.stream("POST", "/v1/completions", json=completion(stream=True)) as r:
        chunks = sse(r)
    assert chunks[-1] == "[DONE]" and all("usage" not in c for c in chunks[:-1])


def _stop_from_greedy_text(text: str, length: int) -> tuple[str, int]:
    """A ``length``-character string the model produced at temperature 0, first seen at index >= 8."""
    for i in range(8, len(text) - length):
        s = text[i:i + length]
        if text.find(s) == i and s.strip():
            return s, i
    pytest.fail(f"no usable stop string in {text!r}")


def test_stop_string_split_across_tokens_never_leaks(client):
    prompt = "HAMLET.\n"
    greedy = client.post("/v1/completions", json=completion(prompt=prompt, max_tokens=40, temperature=0)).json()
    text = greedy["choices"][0]["text"]
    assert len(text) == 40  # char-level: one character per token
    for length in (2, 3, 5):  # every multi-character stop string spans several tokens
        stop, at = _stop_from_greedy_text(text, length)
        body = completion(prompt=prompt, max_tokens=40, temperature=0, stop=[stop, "\u00a7never"])
        r = client.post("/v1/completions", json=body).json()
        assert r["choices"][0]["text"] == text[:at] and r["choices"][0]["finish_reason"] == "stop"
        with client.stream("POST", "/v1/completions", json={**body, "stream": True}) as resp:
            chunks = sse(resp)
        pieces = [ch["text"] for c in chunks[:-1] for ch in c["choices"]]
        assert "".join(pieces) == text[:at]  # not a single character of the stop string leaked
        assert chunks[-2]["choices"][0]["finish_reason"] == "stop" and chunks[-1] == "[DONE]"


def test_chat_stream_starts_with_the_role_and_stops_at_the_turn_end(client):
    with client.stream("POST", "/v1/chat/completions", json=chat(max_tokens=60, temperature=0, stream=True)) as r:
        chunks = sse(r)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[0]["object"] == "chat.completion.chunk"
    text = stream_text(chunks)
    assert "\n\n" not in text and "USER." not in text


def test_n_choices_with_a_stop_string_each_finish_and_match_their_seed(client):
    """Choice i of a seeded request is the lone request with seed + i, even when stops end them early."""
    body = completion(max_tokens=40, temperature=0.9, seed=0, n=3, stop=["e"])
    r = client.post("/v1/completions", json=body).json()
    assert [c["index"] for c in r["choices"]] == [0, 1, 2]
    for i, c in enumerate(r["choices"]):
        alone = client.post("/v1/completions", json={**body, "n": 1, "seed": i}).json()["choices"][0]
        assert (c["text"], c["finish_reason"]) == (alone["text"], alone["finish_reason"])
        assert c["finish_reason"] in ("stop", "length") and "e" not in c["text"]
    assert r["usage"]["completion_tokens"] <= 3 * 40
    with client.stream("POST", "/v1/completions", json={**body, "stream": True}) as resp:
        chunks = sse(resp)
    for i, c in enumerate(r["choices"]):
        assert stream_text(chunks, i) == c["text"]
        assert [ch["finish_reason"] for x in chunks[:-1] for ch in x["choices"]
                if ch["index"] == i and ch["finish_reason"]] == [c["finish_reason"]]


def test_tokens_the_engine_emits_after_a_stop_are_dropped(tm):
    """Deterministic form of the race above: the engine may run a step or two before it sees a
    choice's cancel; those extra tokens must not finish the request again (nor count as usage)."""
    import asyncio

    from genforge.serve.runs import GenerationRun
    from genforge.types import SamplingParams

    class Engine:  # records the rows; the test plays the engine thread
        def submit(self, req):
            pass

    enc = tm.codec.encode

    async def play():
        run = GenerationRun(Engine(), tm.codec, enc("A"), SamplingParams(max_tokens=8, stop=("bc",)), 2, ("bc",))
        run.start()
        r0, r1 = (c.request for c in run.choices)
        for t in enc("abcxy"):  # choice 0 stops at "bc", then two tokens arrive before the cancel is seen
            r0.on_token(t, -1.0, None)
        r0.on_done("cancelled", None)
        for t in enc("hello"):
            r1.on_token(t, -1.0, None)
        r1.on_done("length", None)
        texts, reasons = ["", ""], [None, None]
        async for ev in run.events():
            texts[ev.index] += ev.text
            reasons[ev.index] = ev.finish_reason or reasons[ev.index]
        return texts, reasons, run.completion_tokens, r0.cancelled.is_set()

    texts, reasons, used, cancelled = asyncio.run(asyncio.wait_for(play(), 10))
    assert texts == ["a", "hello"] and reasons == ["stop", "length"]
    assert used == 3 + 5 and cancelled


# --- continuous batching ------------------------------------------------------------------------------
PROMPTS = ["ROMEO.\n", "JULIET.\n", "HAMLET.\nTo be", "KING.\n", "The ", "What ", "O, ", "MACBETH.\nWhen"]


def test_continuous_batching_gives_each_stream_the_lone_greedy_tokens(server, tm, engine):
    app, url = server
    lengths = [40, 24, 32, 16, 40, 28, 36, 20]  # rows leave the batch at different steps
    refs = [tm.generate(p, max_tokens=n, temperature=0) for p, n in zip(PROMPTS, lengths)]
    wait_idle(app)
    engine.max_rows_seen = 0
    steps = engine.steps

    def one(i: int) -> str:
        time.sleep(0.03 * i)  # staggered: rows also join a batch that is already running
        with httpx.Client(base_url=url, timeout=60) as c, c.stream("POST", "/v1/completions", json=completion(
                prompt=PROMPTS[i], max_tokens=lengths[i], temperature=0, stream=True)) as r:
            return stream_text(sse(r))

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        got = list(pool.map(one, range(8), timeout=120))
    assert got == refs
    assert engine.max_rows_seen > 1
    assert engine.steps - steps < sum(lengths)  # decode steps were shared


# --- the official openai client --------------------------------------------------------------------------
def test_the_openai_client_works_unchanged(server):
    openai = pytest.importorskip("openai")
    cl = openai.OpenAI(base_url=server[1] + "/v1", api_key="unused", max_retries=0, timeout=60)

    assert [m.id for m in cl.models.list()] == [MODEL]

    r = cl.completions.create(model=MODEL, prompt="ROMEO.\n", max_tokens=8, n=2, seed=5, logprobs=2)
    assert len(r.choices) == 2 and {c.index for c in r.choices} == {0, 1}
    assert r.usage.prompt_tokens == 7 and r.usage.completion_tokens == 16
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == 8 and all(x <= 0 for x in lp.token_logprobs) and len(lp.top_logprobs[0]) == 2
    again = cl.completions.create(model=MODEL, prompt="ROMEO.\n", max_tokens=8, n=2, seed=5)
    assert [c.text for c in again.choices] == [c.text for c in r.choices]  # seeded: repeatable

    r = cl.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Good morrow."}],
                                   max_tokens=8, n=2, seed=5, logprobs=True, top_logprobs=3)
    assert len(r.choices) == 2 and r.choices[0].message.role == "assistant"
    content = r.choices[0].logprobs.content
    assert content and len(content[0].top_logprobs) == 3 and content[0].logprob <= 0

    s = cl.completions.create(model=MODEL, prompt="ROMEO.\n", max_tokens=12, temperature=0, stream=True,
                              stream_options={"include_usage": True})
    parts = list(s)
    assert parts[-1].usage.completion_tokens == 12
    streamed = "".join(c.choices[0].text for c in parts if c.choices)
    assert streamed == cl.completions.create(model=MODEL, prompt="ROMEO.\n", max_tokens=12,
                                             temperature=0).choices[0].text

    s = cl.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Good morrow."}],
                                   max_tokens=12, temperature=0, stream=True)
    streamed = "".join(c.choices[0].delta.content or "" for c in s if c.choices)
    full = cl.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Good morrow."}],
                                      max_tokens=12, temperature=0)
    assert streamed == full.choices[0].message.content

    width = server[0].state.genforge.models[MODEL].tm.model.config.n_embd
    for kw in ({}, {"encoding_format": "float"}):  # the client asks for base64 by default
        e = cl.embeddings.create(model=MODEL, input=["To be, or not to be", "ROMEO."], **kw)
        assert len(e.data) == 2 and e.usage.prompt_tokens == 19 + 6
        for d in e.data:
            assert len(d.embedding) == width
            assert math.isclose(math.sqrt(sum(x * x for x in d.embedding)), 1.0, rel_tol=1e-4)
        assert e.data[0].embedding != e.data[1].embedding

    with pytest.raises(openai.NotFoundError) as ei:
        cl.completions.create(model="../x", prompt="a", max_tokens=1)
    assert ei.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError):
        cl.completions.create(model=MODEL, prompt="a", max_tokens=1, temperature=5)


def test_health_and_models(client):
    h = client.get("/health").json()
    assert h["status"] == "ok" and h["models"] == [MODEL] and h["inflight"] == 0
    m = client.get("/v1/models").json()
    assert m["object"] == "list" and m["data"][0]["id"] == MODEL
    entry = m["data"][0]
    assert entry["genforge_context_length"] == CTX and entry["genforge_modality"] == "text"
    # the studio's defaults and ranges: SamplingParams', max_tokens None = as many as fit
    sampling = entry["genforge_sampling"]
    assert sampling["defaults"] == {**sampling_defaults("temperature", "top_p", "seed"), "max_tokens": None,
                                    "stop": []}
    assert sampling["limits"]["temperature"] == {"minimum": 0, "maximum": 2}
    assert sampling["limits"]["max_tokens"] == {"minimum": 1, "maximum": CTX - 1}


# --- chat inside the context ---------------------------------------------------------------------------
def long_chat(turns: int = 6) -> list[dict]:
    msgs = [{"role": "system", "content": "Be brief."}]
    for i in range(turns):
        msgs += [{"role": "user", "content": f"How dost thou, good friend {i}?"},
                 {"role": "assistant", "content": "Well, I thank thee, sir; and thou?"}]
    return msgs + [{"role": "user", "content": "Farewell."}]


def test_a_chat_that_may_drop_turns_keeps_the_system_message_and_says_so(client, tm):
    msgs = long_chat()
    r = client.post("/v1/chat/completions", json={"model": MODEL, "messages": msgs})
    assert_openai_error(r, 400, "context_length_exceeded")  # OpenAI's semantics: nothing is dropped
    body = {"model": MODEL, "messages": msgs, "temperature": 0, "genforge_fit_context": True}
    r = client.post("/v1/chat/completions", json=body).json()
    fitted = r["genforge_context"]
    assert fitted["dropped_messages"] > 0 and fitted["context_length"] == CTX
    assert fitted["prompt_tokens"] == r["usage"]["prompt_tokens"]
    assert fitted["prompt_tokens"] + fitted["max_tokens"] == CTX
    # the reply is the in-process one for the kept messages: the system message and the newest ones
    kept = msgs[:1] + msgs[1 + fitted["dropped_messages"]:]
    template = template_for(tm.meta)
    want = tm.generate(template.render(kept), max_tokens=fitted["max_tokens"], temperature=0,
                       stop=template.stop_strings())
    assert r["choices"][0]["message"]["content"] == want
    with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as resp:
        chunks = sse(resp)
    assert chunks[0]["genforge_context"] == fitted and stream_text(chunks) == want


def test_the_first_chat_message_with_the_studio_defaults_fits(client):
    """The studio's first message used to fail: "maximum context length is 256 tokens; the messages has 98
    tokens and max_tokens is 200". Empty max tokens means what fits; an explicit one is trimmed to the room."""
    msgs = [{"role": "user", "content": "Good morrow, sweet prince. How fares the king this fine morning?"}]
    for extra in ({}, {"max_tokens": 200}):
        r = client.post("/v1/chat/completions", json={"model": MODEL, "messages": msgs, "seed": 1,
                                                      "genforge_fit_context": True, **extra})
        assert r.status_code == 200, r.text
        fitted = r.json()["genforge_context"]
        assert fitted["dropped_messages"] == 0 and fitted["prompt_tokens"] > 56
        assert fitted["max_tokens"] == CTX - fitted["prompt_tokens"] < 200


# --- past the context ------------------------------------------------------------------------------------
def test_a_request_may_ask_to_slide_past_the_context(client, tm):
    prompt = "ROMEO.\nWhat say you?"
    r = client.post("/v1/completions", json=completion(prompt=prompt, max_tokens=300, temperature=0))
    assert_openai_error(r, 400, "context_length_exceeded")  # OpenAI's semantics unless asked
    body = completion(prompt=prompt, max_tokens=300, temperature=0.8, seed=2, genforge_sliding_window=True)
    r = client.post("/v1/completions", json=body)
    assert r.status_code == 200, r.text
    want = tm.complete(prompt, max_tokens=300, temperature=0.8, seed=2)  # in-process generation slides too
    assert r.json()["choices"][0]["text"] == want.text and r.json()["usage"]["completion_tokens"] == 300
    with client.stream("POST", "/v1/completions", json={**body, "stream": True}) as resp:
        assert stream_text(sse(resp)) == want.text
    r = client.post("/v1/chat/completions", json=chat(max_tokens=400, genforge_sliding_window=True,
                                                      genforge_fit_context=True))
    assert r.status_code == 200 and r.json()["genforge_context"]["max_tokens"] == 400
    err = assert_openai_error(client.post("/v1/completions", json={**body, "max_tokens": 5000}), 400,
                              "invalid_value")
    assert "4096" in err["message"] and "--max-sliding-tokens" in err["message"] and err["param"] == "max_tokens"
