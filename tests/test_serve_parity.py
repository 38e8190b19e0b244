"""The server generates what the library generates: same parameters and seed, same tokens.

For sampled requests (temperature > 0, top-p, presence and frequency penalties, stop strings, n > 1)
the server's text equals ``TextModel.complete`` in-process, streamed or not, alone or while other
requests share the decode batch. Choice i of a seeded request with n > 1 is the in-process
generation with seed + i. The server here runs with every setting at its default (the 1 MB body
limit included), and its embeddings are checked against a direct computation.
"""
from __future__ import annotations

import concurrent.futures
import threading
import time

import httpx
import pytest
import torch
from serving import running_server, sse, stream_text

import genforge
from genforge.codecs.chat_template import template_for
from genforge.serve.app import ServeSettings

MODEL = "shakespeare-char"
PROMPT = "ROMEO.\nWhat say you, my lord? Speak, and be brief:"
N_TOKENS = 48
CASES = {
    "temperature": dict(temperature=0.9, seed=1),
    "top_p": dict(temperature=1.3, top_p=0.6, seed=2),
    "penalties": dict(temperature=1.0, presence_penalty=1.5, frequency_penalty=0.8, seed=3),
    "all+stop": dict(temperature=1.1, top_p=0.9, presence_penalty=-0.5, frequency_penalty=0.5, seed=4,
                     stop=["the", "\n\n"]),
}


@pytest.fixture(scope="module")
def tm():
    return genforge.load(MODEL)


@pytest.fixture(scope="module")
def server(tm):
    settings = ServeSettings(models=[MODEL])  # every limit at its default
    assert settings.max_body == 1 << 20
    with running_server(settings, {MODEL: tm}) as (app, url):
        yield app, url


@pytest.fixture()
def client(server):
    with httpx.Client(base_url=server[1], timeout=120) as c:
        yield c


def in_process(tm, **kw) -> tuple[str, str]:
    g = tm.complete(PROMPT, max_tokens=N_TOKENS, **kw)
    return g.text, g.finish_reason


def served(client: httpx.Client, stream: bool, **kw) -> list[tuple[str, str]]:
    body = {"model": MODEL, "prompt": PROMPT, "max_tokens": N_TOKENS, **kw}
    if not stream:
        r = client.post("/v1/completions", json=body)
        assert r.status_code == 200, r.text
        return [(c["text"], c["finish_reason"]) for c in r.json()["choices"]]
    with client.stream("POST", "/v1/completions", json={**body, "stream": True}) as r:
        assert r.status_code == 200
        chunks = sse(r)
    assert chunks[-1] == "[DONE]"
    out = []
    for i in range(kw.get("n", 1)):
        reasons = [ch["finish_reason"] for c in chunks[:-1] for ch in c["choices"]
                   if ch["index"] == i and ch["finish_reason"]]
        assert len(reasons) == 1
        out.append((stream_text(chunks, i), reasons[0]))
    return out


def served_alone(url: str, stream: bool, **kw) -> list[tuple[str, str]]:
    with httpx.Client(base_url=url, timeout=120) as c:
        return served(c, stream, **kw)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("case", list(CASES))
def test_a_lone_sampled_request_equals_in_process_generation(client, tm, case: str, stream: bool):
    kw = CASES[case]
    want = in_process(tm, **kw)
    assert served(client, stream, **kw) == [want]
    if case == "all+stop":
        assert want[1] == "stop"  # the stop string really ended it


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_choice_i_of_n_is_in_process_generation_with_seed_plus_i(client, tm, stream: bool):
    kw = dict(temperature=1.1, top_p=0.8, presence_penalty=0.4, stop=["\n\n"])
    want = [in_process(tm, seed=10 + i, **kw) for i in range(3)]
    assert served(client, stream, n=3, seed=10, **kw) == want
    assert len({text for text, _ in want}) == 3  # the choices differ


def test_chat_sampled_reply_equals_in_process_generation(client, tm):
    messages = [{"role": "user", "content": "Good morrow, sir. How fares the king?"}]
    template = template_for(tm.meta)
    prompt = template.render(messages)
    kw = dict(temperature=0.9, top_p=0.85, frequency_penalty=0.6, seed=21)
    g = tm.complete(prompt, max_tokens=N_TOKENS, stop=template.stop_strings(), **kw)
    r = client.post("/v1/chat/completions", json={"model": MODEL, "messages": messages, "max_tokens": N_TOKENS,
                                                  **kw}).json()
    assert (r["choices"][0]["message"]["content"], r["choices"][0]["finish_reason"]) == (g.text, g.finish_reason)


def test_sampled_requests_inside_a_busy_batch_equal_in_process_generation(server, tm):
    app, url = server
    engine = app.state.genforge.models[MODEL].engine
    wants = {case: in_process(tm, **kw) for case, kw in CASES.items()}
    stop = threading.Event()

    def background(i: int) -> None:  # long greedy streams that keep the batch full
        with httpx.Client(base_url=url, timeout=120) as c:
            while not stop.is_set():
                c.post("/v1/completions", json={"model": MODEL, "prompt": f"KING {i}.\n", "max_tokens": 150,
                                                "temperature": 0})

    with concurrent.futures.ThreadPoolExecutor(6 + len(CASES)) as pool:
        busy = [pool.submit(background, i) for i in range(6)]
        deadline = time.monotonic() + 60
        while engine.load < 6:
            assert time.monotonic() < deadline, "the background requests never filled the batch"
            time.sleep(0.01)
        engine.max_rows_seen = 0
        jobs = {case: pool.submit(served_alone, url, case == "penalties", **kw) for case, kw in CASES.items()}
        got = {case: job.result(timeout=120) for case, job in jobs.items()}
        rows = engine.max_rows_seen
        stop.set()
        for f in busy:
            f.result(timeout=120)
    assert rows >= 7  # the sampled requests really ran inside a shared batch
    assert got == {case: [want] for case, want in wants.items()}


def test_the_default_body_limit_is_one_megabyte(client):
    body = f'{{"model": "{MODEL}", "prompt": "ROMEO.", "max_tokens": 1}}'.encode()
    exact = body + b" " * ((1 << 20) - len(body))  # JSON allows trailing white space
    ok = client.post("/v1/completions", content=exact, headers={"content-type": "application/json"})
    assert ok.status_code == 200, ok.text[:300]
    over = client.post("/v1/completions", content=exact + b" ", headers={"content-type": "application/json"})
    assert over.status_code == 413 and over.json()["error"]["message"]


def test_embeddings_are_the_unit_mean_of_the_final_hidden_states(client, tm):
    texts = ["To be, or not to be", "ROMEO.", "O"]
    r = client.post("/v1/embeddings", json={"model": MODEL, "input": texts}).json()
    captured: list[torch.Tensor] = []
    hook = tm.model.transformer.ln_f.register_forward_hook(lambda mod, inp, out: captured.append(out))
    try:
        for text, item in zip(texts, r["data"]):
            captured.clear()
            with torch.no_grad():
                tm.model(torch.tensor([tm.codec.encode(text)]))
            (hidden,) = captured  # (1, T, C): the final layer norm's output at every position
            want = hidden[0].double().mean(dim=0)
            want = (want / want.norm()).tolist()
            assert item["embedding"] == pytest.approx(want, abs=1e-5)
    finally:
        hook.remove()
