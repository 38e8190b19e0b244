"""`genforge serve` under pressure: the concurrency cap, disconnecting clients, API keys, SIGTERM, fuzzing.

An in-process server (uvicorn in a thread, ``max_concurrent=2``, an API key) covers the cap, the
disconnects and auth; ``python -m genforge serve`` subprocesses cover SIGTERM draining and the
schemathesis run against the live /openapi.json. Every request loop is bounded in count and time.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from serving import running_server, wait_health

import genforge
from genforge.serve.app import ServeSettings

MODEL = "shakespeare-char"
KEY = "sk-GenForge-Test-Key-42"
AUTH = {"authorization": f"Bearer {KEY}"}
ERROR_KEYS = {"message", "type", "param", "code"}


# --- helpers -------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_subprocess(tmp_path: Path, *args: str):
    """``python -m genforge serve --model shakespeare-char --port P ARGS``; yield (proc, url, log path)."""
    port = free_port()
    log = tmp_path / "server.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "genforge", "serve", "--model", MODEL, "--port", str(port),
                                 *args], stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_health(url, lambda: proc.poll() is None)
        yield proc, url, log
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(15)


def assert_openai_error(r: httpx.Response, status: int, code: str | None = None) -> dict:
    assert r.status_code == status, (r.status_code, r.text[:500])
    assert "Traceback" not in r.text
    err = r.json()["error"]
    assert set(err) == ERROR_KEYS and err["message"]
    if code is not None:
        assert err["code"] == code, err
    return err


def data_lines(resp: httpx.Response):
    for line in resp.iter_lines():
        if line.startswith("data: "):
            yield line[6:]


def body(**kw) -> dict:
    return {"model": MODEL, "prompt": "ROMEO.\n", "max_tokens": 8, **kw}


# --- fixtures ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server():
    settings = ServeSettings(models=[MODEL], api_key=KEY, max_concurrent=2, max_batch=8)
    with running_server(settings, {MODEL: genforge.load(MODEL)}) as (app, url):
        yield app, url


@pytest.fixture()
def client(server):
    with httpx.Client(base_url=server[1], timeout=60, headers=AUTH) as c:
        yield c


def inflight(client: httpx.Client) -> int:
    r = client.get("/health", timeout=5)
    assert r.status_code == 200
    return r.json()["inflight"]


def wait_freed(server, client, timeout: float = 10.0) -> float:
    """Seconds until /health's inflight is 0 and the engine holds no rows; fails after ``timeout``."""
    engine = server[0].state.genforge.models[MODEL].engine
    t0 = time.monotonic()
    while inflight(client) or engine.load:
        assert time.monotonic() - t0 < timeout, (inflight(client), engine.load)
        time.sleep(0.05)
    return time.monotonic() - t0


# --- the concurrency cap --------------------------------------------------------------------------
def test_requests_beyond_the_cap_get_429_at_once_while_health_stays_up(server, client):
    wait_freed(server, client)
    with contextlib.ExitStack() as held:
        readers = []  # kept referenced: closing a reader would close its connection (a disconnect)
        for _ in range(2):  # fill both slots with long streams; read one chunk so each is admitted
            r = held.enter_context(client.stream("POST", "/v1/completions",
                                                 json=body(max_tokens=240, stream=True)))
            assert r.status_code == 200
            readers.append(data_lines(r))
            next(readers[-1])
        t0 = time.monotonic()
        h = client.get("/health")
        assert h.status_code == 200 and h.json()["inflight"] == 2
        for path, req in (("/v1/completions", body()), ("/v1/completions", body(stream=True)),
                          ("/v1/chat/completions", {"model": MODEL, "max_tokens": 4,
                                                    "messages": [{"role": "user", "content": "Hail."}]})):
            r = client.post(path, json=req)
            err = assert_openai_error(r, 429, "rate_limit_exceeded")
            assert err["type"] == "rate_limit_error" and not r.headers["content-type"].startswith("text/event")
        assert time.monotonic() - t0 < 3.0, "429s and /health must not wait for generation"
        assert client.get("/health").status_code == 200
    # closing the streams frees both slots
    wait_freed(server, client)
    assert client.post("/v1/completions", json=body()).status_code == 200


# --- disconnecting clients -------------------------------------------------------------------------
def test_a_streaming_client_that_leaves_mid_stream_frees_its_slot(server, client):
    wait_freed(server, client)
    for _ in range(2):  # twice: both slots of the cap come back
        with client.stream("POST", "/v1/completions", json=body(max_tokens=240, stream=True)) as r:
            lines = data_lines(r)
            for _ in range(3):
                next(lines)
            assert inflight(client) == 1
        # leaving the block without reading the rest closes the connection mid-stream
        assert wait_freed(server, client) < 5.0
    t0 = time.monotonic()
    r = client.post("/v1/completions", json=body(max_tokens=8))
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 8
    assert time.monotonic() - t0 < 5.0


@pytest.mark.parametrize("stream", [True, False])
def test_a_client_that_hangs_up_while_its_request_runs_frees_its_slot(server, client, stream):
    """Streaming or not, the rows of a client that hangs up are cancelled within a few steps."""
    wait_freed(server, client)
    engine = server[0].state.genforge.models[MODEL].engine
    raw = json.dumps(body(max_tokens=240, stream=stream)).encode()
    port = int(server[1].rsplit(":", 1)[1])
    for wait in (0.0, 0.1):  # at once, and while generating
        steps = engine.steps
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                      b"Authorization: Bearer " + KEY.encode() + b"\r\nContent-Length: %d\r\n\r\n" % len(raw) + raw)
            time.sleep(wait)
        assert wait_freed(server, client) < 3.0
        assert engine.steps - steps < 200, "the rows ran on after the client left"  # 240 if never cancelled
    assert client.post("/v1/completions", json=body()).status_code == 200


# --- API keys ----------------------------------------------------------------------------------------
def test_every_route_but_health_needs_the_exact_key(server):
    app, url = server
    # every documented route (the schema lists the routers' routes however FastAPI nests them)
    routes = [(path, method.upper()) for path, ops in app.openapi()["paths"].items() for method in ops]
    routes += [("/openapi.json", "GET"), ("/docs", "GET"), ("/redoc", "GET"), ("/v1/nope", "GET"),
               ("/v1/models/x", "GET")]
    assert ("/v1/completions", "POST") in routes and ("/v1/embeddings", "POST") in routes
    wrong = [None, f"Bearer {KEY.upper()}", f"Bearer {KEY.lower()}", f"Bearer {KEY.swapcase()}",
             f"Bearer {KEY[:-1]}", f"Bearer  {KEY}", f"Bearer {KEY}x", f"Basic {KEY}", KEY, "Bearer"]
    with httpx.Client(base_url=url, timeout=30) as c:
        for path, method in routes:
            if path in ("/health", "/"):
                continue
            for auth in wrong:
                headers = {"content-type": "application/json"} | ({"authorization": auth} if auth else {})
                r = c.request(method, path, headers=headers, content=b"{}" if method == "POST" else None)
                err = assert_openai_error(r, 401, "invalid_api_key")
                assert err["type"] == "authentication_error" and r.headers["www-authenticate"] == "Bearer"
            r = c.request(method, path, headers={**AUTH, "content-type": "application/json"},
                          content=b"{}" if method == "POST" else None)
            assert r.status_code != 401, (path, method)
            assert r.status_code < 500
        # the scheme is case-insensitive (RFC 9110); the key is not
        assert c.get("/v1/models", headers={"authorization": f"bearer {KEY}"}).status_code == 200
        # open by design: the health probe, and the studio page with its static files (no model access)
        assert c.get("/health").status_code == 200
        assert c.get("/").status_code == 200
        assert c.get("/static/studio.css").status_code == 200


# --- SIGTERM drains ----------------------------------------------------------------------------------
def test_sigterm_drains_the_stream_in_flight_and_exits_0(tmp_path):
    with serve_subprocess(tmp_path, "--api-key", KEY) as (proc, url, log):
        with httpx.Client(base_url=url, timeout=60) as c:
            assert_openai_error(c.get("/v1/models"), 401)  # --api-key works from the command line
            assert c.get("/v1/models", headers=AUTH).status_code == 200
            got = []
            with c.stream("POST", "/v1/completions", headers=AUTH,
                          json=body(max_tokens=100, temperature=0.8, seed=1, stream=True)) as r:
                lines = data_lines(r)
                got.append(next(lines))
                proc.send_signal(signal.SIGTERM)
                t0 = time.monotonic()
                got.extend(lines)
        assert got[-1] == "[DONE]"
        chunks = [json.loads(x) for x in got[:-1]]
        assert chunks[-1]["choices"][0]["finish_reason"] == "length"
        assert len("".join(ch["choices"][0]["text"] for ch in chunks)) == 100  # char-level: 100 tokens
        rc = proc.wait(timeout=30)
        assert rc == 0, log.read_text()[-2000:]
        assert time.monotonic() - t0 < 30
        assert "Traceback" not in log.read_text()


# --- fuzzing -----------------------------------------------------------------------------------------
HOOKS = '''
import schemathesis

VOCAB = set({vocab!r})


def _clean(text):
    return "".join(ch for ch in text if ch in VOCAB) or "a"


@schemathesis.hook
def map_body(ctx, body):
    """Reach the model: the served name, vocabulary-only text, and short generations (fast to fuzz)."""
    if not isinstance(body, dict):
        return body
    if "model" in body:
        body["model"] = "shakespeare-char"
    mt = body.get("max_tokens")
    if isinstance(mt, int) and not isinstance(mt, bool) and 1 <= mt <= 256:
        body["max_tokens"] = min(mt, 4)
    elif "max_tokens" not in body and ("prompt" in body or "messages" in body):
        body["max_tokens"] = 4
    n = body.get("n")
    if isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 8:
        body["n"] = min(n, 2)
    if isinstance(body.get("prompt"), str):
        body["prompt"] = _clean(body["prompt"])
    if isinstance(body.get("input"), str):
        body["input"] = _clean(body["input"])
    messages = body.get("messages")
    for m in messages if isinstance(messages, list) else []:
        if isinstance(m, dict) and isinstance(m.get("content"), str):
            m["content"] = _clean(m["content"])
    return body
'''


def test_schemathesis_finds_no_server_error(tmp_path):
    """~10 s: schemathesis's coverage and fuzzing phases, 20 examples per operation, one worker."""
    pytest.importorskip("schemathesis")
    exe = Path(sys.executable).with_name("schemathesis")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "schemathesis.cli"]
    hooks = tmp_path / "genforge_hooks.py"
    hooks.write_text(HOOKS.format(vocab=genforge.load(MODEL).codec.chars))
    report = tmp_path / "report"
    with serve_subprocess(tmp_path) as (proc, url, log):
        run = subprocess.run(
            [*cmd, "run", f"{url}/openapi.json", "--checks", "not_a_server_error", "--max-examples", "20",
             "--request-timeout", "20", "--seed", "1", "--workers", "1", "--report", "ndjson",
             "--report-dir", str(report)],
            env={**os.environ, "SCHEMATHESIS_HOOKS": str(hooks), "NO_COLOR": "1"},
            capture_output=True, text=True, timeout=240)
        assert proc.poll() is None, "the server died under fuzzing"
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-4000:]
    assert "Traceback" not in log.read_text()
    # the fuzzer reached generation, not only validation errors
    events = "".join(p.read_text() for p in report.glob("*.ndjson"))
    assert len(re.findall(r'"status_code": ?200\b', events)) >= 10, out[-2000:]
    assert not re.search(r'"status_code": ?5\d\d', events)
