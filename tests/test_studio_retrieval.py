"""The studio's chat with retrieval, in headless Chromium against a real ``genforge serve --retrieve INDEX``.

The Sources menu lists the server's indexes with the default chosen; a reply lists the passages it was
given under the bubble, each sentence marked with its citation or as unsupported exactly as the API's
grounding report says; choosing "None" sends ``genforge_retrieve: false`` and the reply has no sources.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from test_studio_browser import Studio, start_serve, studio_page  # skips without Chromium

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> str:
    from genforge.retrieval import add_documents

    tmp = tmp_path_factory.mktemp("studio-retrieval")
    docs = tmp / "docs"
    docs.mkdir()
    (docs / "tower.txt").write_text("The old tower of the harbour town is three hundred feet tall. Its bell "
                                    "rings at noon for the sailors.", encoding="utf-8")
    (docs / "river.txt").write_text("The river floods every spring and the farmers move their sheep to the "
                                    "hills.", encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENFORGE_HOME", str(tmp / "home"))
        add_documents("facts", [str(docs)], embedder="none", progress=False)
    return start_serve(tmp, request, "--model", "shakespeare-chat", "--retrieve", "facts")


@pytest.fixture()
def studio(server: str, tmp_path: Path, request: pytest.FixtureRequest):
    yield from studio_page(server, "chat", "#chat-sources option[value='facts']", tmp_path, request.node.name)


def send(studio: Studio, text: str) -> None:
    studio.page.fill("#chat-input", text)
    studio.page.click("#chat-send")
    studio.wait_until("!document.getElementById('chat-send').disabled", timeout=60, what="the reply to finish")
    assert studio.error_text("chat-error") == ""


def test_a_reply_lists_its_sources_and_marks_its_sentences(studio: Studio) -> None:
    page = studio.page
    assert page.input_value("#chat-sources") == "facts"  # the server's default, chosen
    studio.set_params(max_tokens="40", temperature="0.8", seed="3")
    send(studio, "How tall is the tower?")
    reply = page.locator("#chat-log [data-role=assistant]").last
    sources = reply.locator("ol.sources li")
    assert sources.count() >= 1 and "tower.txt" in sources.first.inner_text()
    marks, cites = reply.locator("mark.unsupported").count(), reply.locator("sup.cite").count()
    body = reply.locator(".msg-body").inner_text()
    assert body.strip()  # the reply's text is all there, marked or not
    # every mark and citation stands on a sentence of the reply; the API's report decides which
    for m in reply.locator("mark.unsupported").all():
        assert m.inner_text() in body
    assert marks + cites <= body.count(".") + body.count("!") + body.count("?") + body.count("\n") + 1


def test_choosing_none_sends_no_retrieval(studio: Studio) -> None:
    page = studio.page
    page.select_option("#chat-sources", "")
    studio.set_params(max_tokens="20", temperature="0.8", seed="3")
    send(studio, "Good morrow.")
    assert page.locator("#chat-log ol.sources").count() == 0
