"""The studio's Images tab in headless Chromium against a real ``genforge serve`` of a tiny diffusion model.

The server runs in a subprocess, serving a diffusion model the test trains (8x8 light and dark squares)
beside the bundled text model. The page must show the tab, fill the grid picture by picture, name the
class it drew, stop on request, and show a server error in its error box. Set
``GENFORGE_STUDIO_SHOTS=/some/folder`` to keep screenshots.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from test_diffusion_task import image_folder, recipe
from test_studio_browser import Studio, start_serve, studio_page  # skips without Chromium

from genforge.train.fit import fit

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> tuple[str, str]:
    tmp = tmp_path_factory.mktemp("studio-images")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENFORGE_HOME", str(tmp / "home"))
        run = fit(recipe(tmp, image_folder(tmp / "squares"), max_steps=30, eval_interval=30)).out_dir
    base = start_serve(tmp, request, "--model", str(run), "--model", "shakespeare-char")
    return base, run.name


@pytest.fixture()
def studio(server, tmp_path: Path, request: pytest.FixtureRequest):
    yield from studio_page(server[0], "images", f"#image-model option[value='{server[1]}']", tmp_path,
                           request.node.name, viewport=(1100, 900))


def pictures(studio: Studio) -> int:
    return studio.js("document.querySelectorAll('#image-grid img').length")


def test_the_grid_fills_with_the_class_the_prompt_names(studio: Studio):
    page = studio.page
    assert page.is_visible("#tab-images") and page.is_visible("#panel-images") and not page.is_visible("#params")
    assert page.locator("#image-class option").all_inner_texts() == ["(named by the prompt)", "0 · dark", "1 · light"]
    page.fill("#image-prompt", "some light squares")
    page.fill("#image-n", "3")
    page.fill("#image-steps", "3")
    page.fill("#image-seed", "5")
    page.click("#image-generate")
    studio.wait_until("document.getElementById('image-stats').textContent.includes('3 images')", what="3 images")
    assert pictures(studio) == 3
    sizes = studio.js("[...document.querySelectorAll('#image-grid img')].map(i => [i.naturalWidth, i.complete])")
    assert sizes == [[8, True]] * 3  # real PNGs the browser decoded
    stats = page.inner_text("#image-stats")
    assert "class light" in stats and "seeds 5–7" in stats and "3 steps" in stats
    page.select_option("#image-class", "0")
    page.fill("#image-n", "2")
    page.click("#image-generate")
    studio.wait_until("document.getElementById('image-stats').textContent.includes('2 images')", what="2 images")
    assert "class dark" in page.inner_text("#image-stats") and pictures(studio) == 2


def test_stop_keeps_the_pictures_made_and_errors_show(studio: Studio):
    page = studio.page
    page.fill("#image-prompt", "a purple elephant")
    page.click("#image-generate")  # a prompt this model cannot draw: the error shows, nothing else
    studio.wait_until("!document.getElementById('image-error').hidden", what="the error box")
    assert "this model can draw" in page.inner_text("#image-error") and pictures(studio) == 0
    page.fill("#image-prompt", "dark")
    page.fill("#image-n", "64")
    page.fill("#image-steps", "200")
    page.click("#image-generate")
    studio.wait_until("document.querySelectorAll('#image-grid img').length >= 1", timeout=60, what="a first picture")
    page.click("#image-stop")
    studio.wait_until("!document.getElementById('image-generate').disabled", what="the form to come back")
    made = pictures(studio)
    assert 1 <= made < 64 and "stopped" in page.inner_text("#image-stats")
    page.fill("#image-n", "1")
    page.fill("#image-steps", "0")
    page.click("#image-generate")
    studio.wait_until("!document.getElementById('image-error').hidden", what="the error box")
    assert "HTTP 400" in page.inner_text("#image-error") and "steps=0" in page.inner_text("#image-error")
