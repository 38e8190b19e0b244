"""The studio's Molecules tab in headless Chromium against a real ``genforge serve`` of a tiny SMILES model.

The server runs in a subprocess (``genforge serve --model RUN --model shakespeare-char``), serving the
molecule model ``test_serve_molecules`` trains beside the bundled text model. The page must show the tab,
list only molecule models in it, fill the grid with cards (an RDKit SVG drawing, the SMILES, QED/logP/SA;
invalid molecules marked as such), and show a server error in its error box. Each test saves a screenshot
to its tmp_path (and to ``GENFORGE_STUDIO_SHOTS`` when set).
"""
from __future__ import annotations

from pathlib import Path

import pytest
from test_serve_molecules import train_molecule_model
from test_studio_browser import Studio, start_serve, studio_page  # skips without Chromium

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> tuple[str, str]:
    tmp = tmp_path_factory.mktemp("studio-molecules")
    run = train_molecule_model(tmp)
    base = start_serve(tmp, request, "--model", str(run), "--model", "shakespeare-char")
    return base, run.name


@pytest.fixture()
def studio(server, tmp_path: Path, request: pytest.FixtureRequest):
    yield from studio_page(server[0], "molecules", f"#molecule-model option[value='{server[1]}']", tmp_path,
                           request.node.name)


def cards(studio: Studio) -> int:
    return studio.js("document.querySelectorAll('#molecule-grid figure.molecule').length")


def test_generate_draws_cards_with_svg_drawings_and_scores(studio: Studio, server):
    page = studio.page
    assert page.is_visible("#tab-molecules") and page.is_visible("#panel-molecules") and not page.is_visible("#params")
    assert page.locator("#molecule-model option").all_inner_texts() == [server[1]]  # molecule models only
    assert server[1] not in page.locator("#model option").all_inner_texts()  # and not in the Text tab
    page.fill("#molecule-n", "10")  # two requests: 8 + 2
    page.fill("#molecule-temperature", "0.7")
    page.fill("#molecule-seed", "5")
    page.click("#molecule-generate")
    studio.wait_until("document.getElementById('molecule-stats').textContent.includes('10 molecules')",
                      what="10 molecules")
    assert cards(studio) == 10
    drawings = studio.js("[...document.querySelectorAll('#molecule-grid img')]"
                         ".map(i => [i.src.startsWith('data:image/svg+xml'), i.complete && i.naturalWidth > 0])")
    assert drawings and all(ok == [True, True] for ok in drawings)  # real SVGs the browser decoded
    valid = studio.js("document.querySelectorAll('#molecule-grid figure.molecule:not(.invalid)').length")
    assert valid == len(drawings) and f"{valid} valid" in page.inner_text("#molecule-stats")
    qeds = page.locator("#molecule-grid dd[data-score=qed]").all_inner_texts()
    assert len(qeds) == valid and all(0 <= float(q) <= 1 for q in qeds)
    assert page.locator("#molecule-grid dd[data-score=sa]").count() == valid
    assert page.locator("#molecule-grid dd[data-score=logp]").count() == valid
    invalid = page.locator("#molecule-grid figure.invalid .drawing").all_inner_texts()
    assert len(invalid) == 10 - valid and all(t == "Not a valid molecule" for t in invalid)
    smiles = page.locator("#molecule-grid code.smiles").all_inner_texts()
    assert len(smiles) == 10 and all(smiles)
    assert "seeds 5–14" in page.inner_text("#molecule-stats")
    page.fill("#molecule-prompt", "CC(=O)N")
    page.fill("#molecule-n", "3")
    page.click("#molecule-generate")
    studio.wait_until("document.getElementById('molecule-stats').textContent.includes('3 molecules')",
                      what="3 molecules")
    assert all(s.startswith("CC(=O)N") for s in page.locator("#molecule-grid code.smiles").all_inner_texts())
    assert "from CC(=O)N" in page.inner_text("#molecule-stats")


def test_a_bad_fragment_shows_the_server_error(studio: Studio):
    page = studio.page
    page.fill("#molecule-prompt", "c1cc!c")
    page.click("#molecule-generate")
    studio.wait_until("!document.getElementById('molecule-error').hidden", what="the error box")
    text = page.inner_text("#molecule-error")
    assert "HTTP 400" in text and "'!'" in text and cards(studio) == 0
    assert not page.is_disabled("#molecule-generate")
