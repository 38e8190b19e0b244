"""End to end: the web studio (``/``) in headless Chromium against a real ``genforge serve``.

Playwright drives Debian's system Chromium (``/usr/bin/chromium``; ``playwright install`` is never
needed). The server runs in a subprocess on a free port as a new user starts it: ``genforge serve``
with its defaults (the bundled ``shakespeare-char`` and ``shakespeare-chat``).
Set ``GENFORGE_STUDIO_SHOTS=/some/folder`` to keep a screenshot of each test's final page.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package (pip install playwright)")

CHROMIUM = "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip(f"needs the system Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)

pytestmark = pytest.mark.browser

MODEL = "shakespeare-char"
CHAT_MODEL = "shakespeare-chat"
CONTEXT = 256
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


# ------------------------------------------------------------------------------------ fixtures
def studio_page(base: str, tab: str, ready: str, tmp_path: Path, shot_name: str,
                viewport: tuple[int, int] = (1200, 1000)) -> Iterator[Studio]:
    """A fixture body: headless Chromium on ``base/#tab``, once ``ready`` (a selector) is attached; after
    the test, a full-page screenshot (kept in ``GENFORGE_STUDIO_SHOTS`` when set) and no page errors or
    requests to other hosts."""
    import shutil

    pw = sync_api.sync_playwright().start()
    browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
    s = Studio(page, base)
    try:
        page.goto(f"{base}/#{tab}")
        page.wait_for_selector(ready, state="attached")
        yield s
        shot = tmp_path / f"{tab}-tab.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 0
        shots = os.environ.get("GENFORGE_STUDIO_SHOTS")
        if shots:
            Path(shots).mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, Path(shots) / f"{shot_name}.png")
        assert s.page_errors == [] and s.foreign == []
    finally:
        browser.close()
        pw.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 (a local URL)
        return r.status, r.read()


def start_serve(tmp: Path, request: pytest.FixtureRequest, *args: str) -> str:
    """``genforge serve ARGS`` in a subprocess with ``GENFORGE_HOME=tmp/home``, terminated when the requesting
    fixture ends; its base URL once ``/health`` answers (the test fails with the server's log otherwise)."""
    port = _free_port()
    log_path = tmp / "server.log"
    env = {**os.environ, "GENFORGE_HOME": str(tmp / "home"), "PYTHONUNBUFFERED": "1"}
    log = open(log_path, "wb")  # noqa: SIM115 (closed by the finalizer)
    proc = subprocess.Popen([sys.executable, "-m", "genforge", "serve", "--host", "127.0.0.1", "--port", str(port),
                             *args], stdout=log, stderr=subprocess.STDOUT, env=env)

    def stop() -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        log.close()

    request.addfinalizer(stop)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-3000:]
            pytest.fail(f"genforge serve exited with {proc.returncode}:\n{tail}")
        try:
            if _get(f"{base}/health", timeout=1.0)[0] == 200:
                return base
        except OSError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"genforge serve did not answer GET /health within 60 s:\n"
                        f"{log_path.read_text(errors='replace')[-3000:]}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> str:
    """A real ``genforge serve`` (the default models) in a subprocess; its base URL."""
    return start_serve(tmp_path_factory.mktemp("studio-server"), request)


@pytest.fixture(scope="module")
def server_models(server: str) -> list[dict[str, Any]]:
    return json.loads(_get(f"{server}/v1/models")[1])["data"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    pw = sync_api.sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()
    finally:
        pw.stop()


class Studio:
    """A page on the studio, plus what it must never do: throw, or fetch anything from elsewhere."""

    def __init__(self, page: Any, base: str):
        self.page = page
        self.base = base
        self.page_errors: list[str] = []
        self.foreign: list[str] = []
        page.on("pageerror", lambda e: self.page_errors.append(str(e)))
        page.on("request", self._request)

    def _request(self, req: Any) -> None:
        own = (self.base + "/", "blob:" + self.base + "/", "data:")  # blob: URLs the page made itself
        if not req.url.startswith(own):
            self.foreign.append(req.url)

    def open(self, path: str = "/") -> None:
        self.page.goto(self.base + path)
        self.page.wait_for_selector(f"#model option[value='{MODEL}']", state="attached")

    def js(self, expression: str) -> Any:
        return self.page.evaluate(expression)

    def wait_until(self, expression: str, timeout: float = 20.0, what: str = "") -> Any:
        # Polls with page.evaluate rather than wait_for_function, which the page's CSP (no eval) blocks.
        deadline = time.monotonic() + timeout
        while True:
            value = self.page.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what or expression}")
            time.sleep(0.02)

    def output_len(self) -> int:
        return self.js("document.getElementById('output').textContent.length")

    def generating(self) -> bool:
        return self.js("document.getElementById('generate').disabled")

    def error_text(self, box: str = "error") -> str:
        return self.js(f"(e => e.hidden ? '' : e.textContent)(document.getElementById('{box}'))")

    def set_params(self, **values: str) -> None:
        ids = {"max_tokens": "#max-tokens", "temperature": "#temperature", "top_p": "#top-p", "seed": "#seed",
               "stop": "#stop-seqs"}
        for key, value in values.items():
            self.page.fill(ids[key], value)


@pytest.fixture()
def studio(browser: Any, server: str, request: pytest.FixtureRequest) -> Iterator[Studio]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(20_000)
    s = Studio(context.new_page(), server)
    try:
        yield s
        shots = os.environ.get("GENFORGE_STUDIO_SHOTS")
        if shots:
            Path(shots).mkdir(parents=True, exist_ok=True)
            s.page.screenshot(path=str(Path(shots) / f"{request.node.name}.png"), full_page=True)
        assert not s.page_errors, f"uncaught errors in the page: {s.page_errors}"
        assert not s.foreign, f"the page fetched from outside its server: {s.foreign}"
    finally:
        context.close()


# ------------------------------------------------------------------------------------ tests
def test_page_loads_with_tabs_for_served_models_only(studio: Studio, server_models: list[dict[str, Any]]) -> None:
    studio.open()
    page = studio.page
    assert page.title() == "genforge studio"
    assert "Connected" in page.inner_text("#server-status")
    options = page.eval_on_selector_all("#model option", "os => os.map(o => o.value)")
    text_ids = [m["id"] for m in server_models if m.get("genforge_modality", "text") == "text"]
    assert options == text_ids
    tabs = page.eval_on_selector_all("[role=tab]:not([hidden])", "ts => ts.map(t => t.textContent.trim())")
    assert tabs == ["Text", "Chat"]  # no tab for a modality the server does not serve
    assert page.get_attribute("#tab-text", "aria-selected") == "true"
    # every control the tests use has an accessible name
    assert page.get_by_label("Prompt", exact=True).get_attribute("id") == "prompt"
    assert page.get_by_label("Temperature", exact=True).get_attribute("id") == "temperature"
    assert page.get_by_label("Message", exact=True).get_attribute("id") == "chat-input"
    for asset in ("static/studio.js", "static/studio.css"):
        assert _get(f"{studio.base}/{asset}")[0] == 200


def test_generate_streams_text(studio: Studio) -> None:
    studio.open()
    page = studio.page
    page.select_option("#model", MODEL)
    page.fill("#prompt", "ROMEO.\n")
    studio.set_params(max_tokens="200", temperature="0.8", seed="1")
    # Record every change of the output inside the page, so streaming is seen however fast the model is.
    studio.js("""() => {
        const el = document.getElementById('output');
        window.__samples = [];
        new MutationObserver(() => window.__samples.push([performance.now(), el.textContent.length]))
            .observe(el, {characterData: true, childList: true, subtree: true});
    }""")
    page.click("#generate")
    outside: list[int] = []  # and sample it from out here while the Stop button says it is streaming
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        n, busy = studio.js("[document.getElementById('output').textContent.length, "
                            "!document.getElementById('stop').disabled]")
        if not busy:
            break
        outside.append(n)
        time.sleep(0.02)
    studio.wait_until("!document.getElementById('generate').disabled", what="the generation to finish")

    final = studio.output_len()
    assert final >= 20, page.inner_text("#output")
    assert studio.error_text() == ""
    samples = studio.js("window.__samples")
    lengths = [n for _, n in samples]
    assert lengths == sorted(lengths), "the output only grows while streaming"
    distinct = sorted({n for n in lengths if 0 < n < final})
    assert len(distinct) >= 5, f"text should arrive in pieces, saw lengths {lengths}"
    assert samples[-1][0] > samples[0][0]
    midway = [n for n in outside if 0 < n < final]
    assert len(midway) >= 2, f"sampled from the test, the output should be seen part-way: {outside} (final {final})"
    stats = page.inner_text("#stats")
    assert "tokens/s" in stats and "finish:" in stats, stats
    assert page.is_disabled("#stop")


def test_stop_button_stops_growth(studio: Studio) -> None:
    studio.open()
    page = studio.page
    prompt = "ROMEO.\n"
    max_tokens = CONTEXT - len(prompt) - 1  # the longest generation the model's context allows
    page.fill("#prompt", prompt)
    studio.set_params(max_tokens=str(max_tokens), temperature="1")
    # Press Stop from inside the page the moment 20 characters are showing: it cannot lose a race with
    # a fast model, and it is the same click a user makes.
    studio.js("""() => {
        const el = document.getElementById('output');
        window.__stoppedAt = null;
        const mo = new MutationObserver(() => {
            if (window.__stoppedAt === null && el.textContent.length >= 20) {
                window.__stoppedAt = el.textContent.length;
                mo.disconnect();
                document.getElementById('stop').click();
            }
        });
        mo.observe(el, {characterData: true, childList: true, subtree: true});
    }""")
    page.click("#generate")
    studio.wait_until("window.__stoppedAt !== null", what="20 characters of output")
    studio.wait_until("!document.getElementById('generate').disabled", what="the page to leave the streaming state")
    after_stop = studio.output_len()
    time.sleep(0.6)
    assert studio.output_len() == after_stop, "the output kept growing after Stop"
    assert after_stop < max_tokens
    assert page.is_disabled("#stop")
    assert "stopped by you" in page.inner_text("#stats")
    assert studio.error_text() == ""
    # the server is fine afterwards: a new generation runs to its end
    studio.set_params(max_tokens="30")
    page.click("#generate")
    studio.wait_until("!document.getElementById('generate').disabled && "
                      "document.getElementById('stats').textContent.includes('finish:')", what="a second generation")
    assert studio.error_text() == ""
    assert studio.output_len() > 0
    assert "stopped" not in page.inner_text("#stats")


def test_generation_slides_past_the_context(studio: Studio) -> None:
    studio.open()
    page = studio.page
    page.select_option("#model", MODEL)
    page.fill("#prompt", "ROMEO.\n")
    studio.set_params(max_tokens=str(2 * CONTEXT), temperature="0.8", seed="4")
    page.click("#generate")
    studio.wait_until("document.getElementById('stats').textContent.includes('finish:')", timeout=90,
                      what="the generation")
    assert studio.error_text() == ""
    assert studio.output_len() == 2 * CONTEXT  # one character a token: twice the context, by sliding
    assert "finish: length" in page.inner_text("#stats")


def test_server_error_shows_in_error_box(studio: Studio) -> None:
    studio.open()
    page = studio.page
    studio.set_params(max_tokens=str(CONTEXT * 100))  # past the server's limit for sliding generation
    page.click("#generate")
    studio.wait_until("!document.getElementById('error').hidden", what="the error box")
    message = studio.error_text()
    assert "HTTP 4" in message and len(message) > 15, message
    assert page.is_enabled("#generate") and page.is_disabled("#stop")


def test_chat_reply_streams_into_log(studio: Studio, server_models: list[dict[str, Any]]) -> None:
    studio.open("/#chat")
    page = studio.page
    assert page.get_attribute("#tab-chat", "aria-selected") == "true"
    assert page.is_visible("#chat-input") and not page.is_visible("#prompt")
    chat_models = [m["id"] for m in server_models if m.get("genforge_chat")]
    listed = page.eval_on_selector_all("#chat-model option", "os => os.map(o => o.value)")
    model = chat_models[0] if chat_models else listed[0]
    page.select_option("#chat-model", model)
    studio.set_params(max_tokens="40", temperature="0.8", seed="3")
    page.fill("#chat-input", "Good morrow, sweet prince.")
    page.click("#chat-send")
    studio.wait_until("!document.getElementById('chat-send').disabled", what="the reply to finish")
    error = studio.error_text("chat-error")
    if error and not chat_models:
        pytest.skip(f"the server lists no chat model and refuses chat with the base model {model}: {error}")
    assert error == ""
    users = page.locator("#chat-log [data-role=user]")
    replies = page.locator("#chat-log [data-role=assistant] .msg-body")
    assert users.count() == 1 and replies.count() == 1
    assert "Good morrow, sweet prince." in users.first.inner_text()
    assert len(replies.first.inner_text().strip()) > 0
    assert page.input_value("#chat-input") == ""
    assert "finish:" in page.inner_text("#chat-stats")
    page.click("#chat-reset")
    assert page.locator("#chat-log .msg").count() == 0


def _visible(studio: Studio, box: str) -> str:
    return studio.js(f"(e => e.hidden ? '' : e.textContent)(document.getElementById('{box}'))")


def test_first_chat_message_with_default_settings_succeeds(studio: Studio, server_models: list[dict[str, Any]]) -> None:
    """A new user's first chat: nothing changed, the default chat model, the server's defaults. It used to fail
    with "HTTP 400: maximum context length is 256 tokens; the messages has 98 tokens and max_tokens is 200".
    As the conversation outgrows the context, the oldest turns are left out (greyed) and the page says so."""
    studio.open("/#chat")
    page = studio.page
    assert page.input_value("#chat-model") == CHAT_MODEL  # chat models come first
    defaults = next(m for m in server_models if m["id"] == CHAT_MODEL)["genforge_sampling"]["defaults"]
    assert page.input_value("#max-tokens") == "" and defaults["max_tokens"] is None  # empty: what fits
    assert float(page.input_value("#temperature")) == defaults["temperature"]  # from the server, no copy
    assert float(page.input_value("#top-p")) == defaults["top_p"]
    messages = ["Good morrow, sweet prince. How fares the king this fine morning, I pray thee?",
                "And what news from the court? Speak, I pray thee, and be brief with me, good sir.",
                "Then tell me of the queen, for I have not seen her these many days and nights."]
    for i, text in enumerate(messages):
        page.fill("#chat-input", text)
        page.click("#chat-send")
        studio.wait_until("!document.getElementById('chat-send').disabled", timeout=60, what=f"reply {i + 1}")
        assert _visible(studio, "chat-error") == "", f"message {i + 1}"
        replies = page.locator("#chat-log [data-role=assistant] .msg-body")
        assert replies.count() == i + 1 and replies.nth(i).inner_text().strip()
        assert "finish:" in page.inner_text("#chat-stats")
        if i == 0:
            assert _visible(studio, "chat-note") == "" and page.locator("#chat-log .msg.dropped").count() == 0
    # about 80 tokens a message: by the third, the oldest exchanges no longer fit the 256-token context
    note = _visible(studio, "chat-note")
    assert f"context holds {CONTEXT} tokens" in note and "left out" in note, note
    dropped = page.locator("#chat-log .msg.dropped")
    assert dropped.count() >= 2 and dropped.first.get_attribute("data-role") == "user"
    assert page.locator("#chat-log .msg").last.get_attribute("class").split().count("dropped") == 0
    page.click("#chat-reset")
    assert _visible(studio, "chat-note") == ""


def test_generate_with_default_settings_fills_the_context(studio: Studio) -> None:
    studio.open()
    page = studio.page
    page.select_option("#model", MODEL)
    prompt = page.input_value("#prompt")
    page.click("#generate")
    studio.wait_until("document.getElementById('stats').textContent.includes('finish:')", timeout=60,
                      what="the generation")
    assert studio.error_text() == ""
    assert studio.output_len() == CONTEXT - len(prompt)  # empty max tokens: as many as fit (one char a token)
    assert "finish: length" in page.inner_text("#stats")


def test_sse_parser_handles_split_chunks(studio: Studio) -> None:
    """The page's stream parser, fed chunks that split a field name, a CRLF, a UTF-8 character and an event."""
    studio.open()
    events = studio.js(r"""async () => {
        const { sseEvents } = await import(new URL('static/studio.js', document.baseURI).href);
        const raw = new TextEncoder().encode(
            ': hello\r\n\r\ndata: {"t": "caf\u00e9 \ud83c\udfad"}\r\n\r\n' +
            'data: one\ndata:two\n\nevent: x\nid: 7\ndata: [DONE]\n\ndata: tail');
        const cuts = [8, 13, 28, 31, 32, 37, 43, 49, 59, raw.length];  // bytes: CR|LF, da|ta, \xc3|\xa9, ...
        const body = new ReadableStream({ start(c) {
            let at = 0;
            for (const cut of cuts) { c.enqueue(raw.slice(at, cut)); at = cut; }
            c.close();
        } });
        const out = [];
        for await (const e of sseEvents(body)) out.push(e);
        return out;
    }""")
    assert events == ['{"t": "caf\u00e9 \U0001f3ad"}', "one\ntwo", "[DONE]", "tail"]


def test_narrow_screen_has_no_sideways_scroll(browser: Any, server: str) -> None:
    context = browser.new_context(viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True)
    try:
        page = context.new_page()
        s = Studio(page, server)
        s.open()
        width, client = s.js("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert width <= client + 1, f"page is {width}px wide in a {client}px viewport"
        assert page.is_visible("#generate") and page.is_visible("#prompt")
        assert not s.page_errors
    finally:
        context.close()
