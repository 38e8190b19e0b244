"""A model that fails in the middle of a generation: the stream reports it, then ends cleanly.

Promise (reliability spec): an error found before generation is a plain HTTP error; an error during
generation is an error event and then ``data: [DONE]``, and the server keeps serving.
"""
from __future__ import annotations

import httpx
from serving import running_server
from test_serve import sse

import genforge
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
