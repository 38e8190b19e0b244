"""The studio's Sound tab in headless Chromium against a real ``genforge serve`` of a tiny music model.

The server runs in a subprocess (``genforge serve --model RUN --model shakespeare-char``). The page must show
the tab with the model's styles and keys, compose a piece whose audio element loads and has a duration
(FluidSynth's WAV; without a synthesizer the piano roll alone, with the reason), and show a server error
in its error box. Each test saves a screenshot to its tmp_path (and to ``GENFORGE_STUDIO_SHOTS`` when set).
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_music import chorale_pieces, train_music_model
from test_speech import train_speech_model
from test_studio_browser import Studio, start_serve, studio_page  # skips without Chromium

from genforge.music import synthesizer_problem

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> tuple[str, str, str]:
    tmp = tmp_path_factory.mktemp("studio-sound")
    run, _ = train_music_model(tmp, chorale_pieces(6))
    speech, _ = train_speech_model(tmp)
    base = start_serve(tmp, request, "--model", str(run), "--model", str(speech), "--model", "shakespeare-char")
    return base, run.name, speech.name


@pytest.fixture()
def studio(server, tmp_path: Path, request: pytest.FixtureRequest):
    yield from studio_page(server[0], "sound", f"#sound-model option[value='{server[1]}']", tmp_path,
                           request.node.name)


def test_compose_plays_a_piece_and_shows_its_piano_roll(studio: Studio, server):
    page = studio.page
    assert page.is_visible("#tab-sound") and page.is_visible("#panel-sound") and not page.is_visible("#params")
    assert page.locator("#sound-model option").all_inner_texts() == [server[1]]  # music models only
    assert page.locator("#speech-model option").all_inner_texts() == [server[2]]  # and speech models
    assert page.locator("#sound-style option").all_inner_texts()[1:] == ["user"]
    keys = page.locator("#sound-key option").all_inner_texts()
    assert "G major" in keys
    page.select_option("#sound-key", "G major")
    page.fill("#sound-seconds", "8")
    page.fill("#sound-seed", "3")
    page.click("#sound-generate")
    studio.wait_until("document.getElementById('sound-stats').textContent.includes('of music in')",
                      timeout=60, what="a piece")
    assert studio.js("document.querySelectorAll('#sound-pieces figure.piece').length") == 1
    assert "G major" in page.inner_text("#sound-pieces figcaption") and "seed 3" in page.inner_text("#sound-pieces")
    notes = re.search(r"(\d+) notes", page.inner_text("#sound-pieces figcaption"))
    assert notes and int(notes.group(1)) > 0, page.inner_text("#sound-pieces figcaption")  # a piece, not silence
    roll = studio.js("(() => { const i = document.querySelector('#sound-pieces img'); "
                     "return [i.src.startsWith('data:image/png'), i.complete && i.naturalWidth > 0]; })()")
    assert roll == [True, True]
    if synthesizer_problem() is not None:
        assert "no WAV" in page.inner_text("#sound-stats")
        return
    duration = studio.wait_until("(() => { const a = document.querySelector('#sound-pieces audio'); "
                                 "return a && a.readyState >= 1 && isFinite(a.duration) && a.duration; })()",
                                 what="the audio's metadata")
    assert 1.0 < duration <= 8.0 + 3.0  # FluidSynth adds the release tail of the last notes
    links = page.locator("#sound-pieces figcaption a").all_inner_texts()
    assert links == ["MIDI", "WAV"]


def test_a_bad_request_shows_the_server_error(studio: Studio):
    page = studio.page
    page.fill("#sound-seconds", "0")
    page.click("#sound-generate")
    studio.wait_until("!document.getElementById('sound-error').hidden", what="the error box")
    assert "between 1 and" in page.inner_text("#sound-error")
    studio.js("document.getElementById('sound-seconds').max = '500'")  # the page's own check passes now
    page.fill("#sound-seconds", "400")
    page.click("#sound-generate")
    studio.wait_until("document.getElementById('sound-error').textContent.includes('HTTP 400')", what="HTTP 400")
    assert "seconds" in page.inner_text("#sound-error")
    assert studio.js("document.querySelectorAll('#sound-pieces figure.piece').length") == 0
    assert not page.is_disabled("#sound-generate")


def test_speak_plays_the_words(studio: Studio):
    page = studio.page
    assert "seven" in page.inner_text("#speech-model-info")
    page.fill("#speech-input", "seven three")
    page.click("#speech-generate")
    studio.wait_until("document.getElementById('speech-stats').textContent.includes('spoken in')", timeout=90,
                      what="the words")
    duration = studio.wait_until("(() => { const a = document.querySelector('#speech-clips audio'); "
                                 "return a && a.readyState >= 1 && isFinite(a.duration) && a.duration; })()",
                                 what="the audio's metadata")
    assert 0.5 < duration < 3.0
    page.fill("#speech-input", "elephant")
    page.click("#speech-generate")
    studio.wait_until("!document.getElementById('speech-error').hidden", what="the error box")
    assert "HTTP 400" in page.inner_text("#speech-error") and "it knows zero" in page.inner_text("#speech-error")
