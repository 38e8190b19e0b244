"""Running a real genforge server on loopback for tests: in-process uvicorn on a free port."""
from __future__ import annotations

import contextlib
import json
import socket
import threading
import time

import httpx
import uvicorn

from genforge.serve.app import ServeSettings, create_app
from genforge.serve.guard import Guard


@contextlib.contextmanager
def running_server(settings: ServeSettings, loaded: dict | None = None):
    """Serve ``create_app(settings)`` behind the Guard on 127.0.0.1:<free port>; yield (app, url)."""
    app = create_app(settings, loaded)
    # bound before the thread starts (no free-port race); IPPROTO_TCP explicitly, or asyncio does not set
    # TCP_NODELAY on the accepted connections and every keep-alive request stalls ~40 ms (Nagle)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(Guard(app, settings.api_key, settings.max_body), host="127.0.0.1",
                                           port=0, log_level="warning", timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_health(url, lambda: thread.is_alive())
        yield app, url
    finally:
        server.should_exit = True
        thread.join(20)
        sock.close()


def wait_health(url: str, alive, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert alive(), "the server exited before it was up"
        assert time.monotonic() < deadline, f"server not up after {timeout} s"
        time.sleep(0.05)


def sse(resp: httpx.Response) -> list:
    """The ``data:`` payloads of an SSE response: parsed JSON chunks, then the string "[DONE]"."""
    out = []
    for line in resp.iter_lines():
        if line.startswith("data: "):
            out.append("[DONE]" if line == "data: [DONE]" else json.loads(line[6:]))
    return out


def stream_text(chunks: list, index: int = 0) -> str:
    """The text of choice ``index`` put together from SSE chunks (completions or chat deltas)."""
    text = ""
    for c in chunks:
        if isinstance(c, dict):
            for ch in c["choices"]:
                if ch["index"] == index:
                    text += ch.get("text") or (ch.get("delta") or {}).get("content") or ""
    return text
