"""A model that fails in the middle of a generation: the stream reports it, then ends cleanly.

Promise (reliability spec): an error found before generation is a plain HTTP error; an error during
generation is an error event and then ``data: [DONE]``, and the server keeps serving.
"""
from __future__ import annotations

import asyncio

import httpx
from serving import running_server
from test_serve import sse

import genforge
from genforge.errors import DataError
from genforge.serve.app import ServeSettings


class FailingAfter:
    """Wraps a real model's decode calls so the n-th one raises, like a device fault would."""

    def __init__(self, model, n: int) -> None:
        self.calls, self.n = 0, n
        for name in ("step", "step_rows"):
            original = getattr(model, name)

            def wrapped(*args, _original=original, **kwargs):
                self.calls += 1
                if self.calls == self.n:
                    raise RuntimeError("simulated device fault")
                return _original(*args, **kwargs)

            setattr(model, name, wrapped)


def test_an_error_during_generation_is_an_error_event_then_done():
    tm = genforge.load("shakespeare-char")
    FailingAfter(tm.model, n=5)  # the prompt's prefill is call 1; the fault hits after a few tokens
    settings = ServeSettings(models=["boom"], max_concurrent=4)
    with running_server(settings, loaded={"boom": tm}) as (_, url):
        body = {"model": "boom", "prompt": "MACBETH.\n", "max_tokens": 30, "temperature": 0, "stream": True}
        with httpx.stream("POST", url + "/v1/completions", json=body, timeout=30) as r:
            assert r.status_code == 200
            events = sse(r)
        texts = [e for e in events if isinstance(e, dict) and "choices" in e]
        errors = [e for e in events if isinstance(e, dict) and "error" in e]
        assert texts, "some tokens were streamed before the fault"
        assert len(errors) == 1 and set(errors[0]["error"]) == {"message", "type", "param", "code"}
        assert "simulated device fault" in errors[0]["error"]["message"]
        assert events[-1] == "[DONE]"
        # the same fault without streaming is an OpenAI-shaped 500, and the server still serves
        FailingAfter(tm.model, n=3)
        r = httpx.post(url + "/v1/completions", json=dict(body, stream=False), timeout=30)
        assert r.status_code == 500 and r.json()["error"]["type"] == "server_error"
        ok = httpx.post(url + "/v1/completions", json=dict(body, stream=False, max_tokens=5), timeout=30)
        assert ok.status_code == 200 and ok.json()["choices"][0]["finish_reason"] == "length"
        assert httpx.get(url + "/health").json()["inflight"] == 0


class BadDecoder:
    """A codec whose stream decoder fails on the ``n``-th token, like a token id the codec lacks."""

    def __init__(self, codec, n: int) -> None:
        self.codec, self.n = codec, n

    def __getattr__(self, name):
        return getattr(self.codec, name)

    def decoder(self):
        inner, count, n = self.codec.decoder(), [0], self.n

        class Decoder:
            def push(self, token_id: int) -> str:
                count[0] += 1
                if count[0] == n:
                    raise DataError(f"token id {token_id} cannot be decoded (simulated)")
                return inner.push(token_id)

            def flush(self) -> str:
                return inner.flush()

        return Decoder()


def test_a_decode_error_is_reported_never_swallowed_in_the_bridge():
    """Served, an error raised while decoding a token ends that choice with the error (500 / error event);
    the request never returns 200 with tokens silently missing, and other choices keep their tokens."""
    tm = genforge.load("shakespeare-char")
    tm.codec = BadDecoder(tm.codec, n=4)
    with running_server(ServeSettings(models=["bad"], max_concurrent=4), loaded={"bad": tm}) as (_, url):
        body = {"model": "bad", "prompt": "MACBETH.\n", "max_tokens": 12, "temperature": 0}
        r = httpx.post(url + "/v1/completions", json=body, timeout=30)
        assert r.status_code == 500, r.text
        assert r.json()["error"]["type"] == "server_error" and "cannot be decoded" in r.json()["error"]["message"]
        with httpx.stream("POST", url + "/v1/completions", json={**body, "stream": True}, timeout=30) as resp:
            assert resp.status_code == 200
            events = sse(resp)
        text = "".join(c["choices"][0]["text"] for c in events if isinstance(c, dict) and c.get("choices"))
        errors = [e for e in events if isinstance(e, dict) and "error" in e]
        assert len(text) == 3 and len(errors) == 1 and events[-1] == "[DONE]"  # 3 tokens, then the error
        assert "cannot be decoded" in errors[0]["error"]["message"]
        assert httpx.get(url + "/health").json()["inflight"] == 0


def test_a_failing_callback_never_takes_the_rest_of_the_burst_with_it():
    from genforge.serve.runs import _LoopBridge

    async def play():
        loop = asyncio.get_running_loop()
        reported, ran = [], []
        loop.set_exception_handler(lambda _loop, ctx: reported.append(ctx["exception"]))
        bridge = _LoopBridge(loop)
        bridge.put(lambda: ran.append(1))
        bridge.put(lambda: 1 / 0)
        bridge.put(lambda: ran.append(3))
        await asyncio.sleep(0.05)
        return ran, reported

    ran, reported = asyncio.run(play())
    assert ran == [1, 3] and len(reported) == 1 and isinstance(reported[0], ZeroDivisionError)
