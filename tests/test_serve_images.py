"""`POST /v1/images/generations`: a real server on loopback serves a tiny diffusion model beside a text model.

The official openai client's ``images.generate`` works unchanged, the images are exactly the library's
for the same settings and seed, sizes are whole multiples of the model's, and bad settings are
OpenAI-style 400s naming the bound.
"""
from __future__ import annotations

import base64
import io

import httpx
import numpy as np
import pytest
import torch
from PIL import Image
from serving import running_server
from test_diffusion_task import image_folder, recipe

import genforge
from genforge.serve.app import ServeSettings
from genforge.train.fit import fit

TEXT = "shakespeare-char"


@pytest.fixture(scope="module")
def image_model(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("served-diffusion")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENFORGE_HOME", str(tmp / "home"))
        run = fit(recipe(tmp, image_folder(tmp / "squares"), max_steps=30, eval_interval=30)).out_dir
    return run


@pytest.fixture(scope="module")
def server(image_model):
    im, tm = genforge.load(image_model), genforge.load(TEXT)
    settings = ServeSettings(models=[str(image_model), TEXT])
    with running_server(settings, {str(image_model): im, TEXT: tm}) as (app, url):
        yield url, image_model.name, im


def png(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def test_the_openai_client_gets_the_librarys_images(server):
    openai = pytest.importorskip("openai")
    url, name, im = server
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused")
    r = client.images.generate(model=name, prompt="two light squares", n=2, response_format="b64_json",
                               extra_body={"seed": 3, "steps": 4})
    want = im.generate(n=2, cls="light", steps=4, seed=3)
    assert len(r.data) == 2
    for i, item in enumerate(r.data):
        picture = png(item.b64_json)
        assert picture.size == (8, 8) and "light" in item.revised_prompt
        assert torch.equal(torch.from_numpy(np.asarray(picture).copy()), want[i, 0])
        assert '"seed": 3' in picture.text["genforge"] and picture.text["class"] == "light"


def test_sizes_are_whole_multiples_and_models_list_the_classes(server):
    url, name, im = server
    with httpx.Client(base_url=url, timeout=60) as c:
        body = {"model": name, "prompt": "dark", "seed": 1, "steps": 3}
        small = c.post("/v1/images/generations", json=body).json()
        big = c.post("/v1/images/generations", json={**body, "size": "16x16"}).json()
        a = np.asarray(png(small["data"][0]["b64_json"]))
        b = np.asarray(png(big["data"][0]["b64_json"]))
        assert b.shape == (16, 16) and np.array_equal(b, a.repeat(2, 0).repeat(2, 1))  # pixels repeated
        assert big["genforge"]["size"] == "16x16" and big["genforge"]["class"] == "dark"
        models = {m["id"]: m for m in c.get("/v1/models").json()["data"]}
        assert models[name]["genforge_modality"] == "image"
        assert models[name]["genforge_image"]["classes"] == ["dark", "light"]
        assert models[TEXT]["genforge_modality"] == "text"


@pytest.mark.parametrize("change,status,param,needle", [
    ({"n": 0}, 400, None, "n=0 is out of range"),
    ({"n": 9}, 400, "n", "exceeds this server's limit of 8"),
    ({"steps": 0}, 400, None, "steps=0 is out of range"),
    ({"guidance": 99}, 400, None, "guidance=99"),
    ({"sampler": "euler"}, 400, None, "sampler 'euler' is unknown"),
    ({"size": "12x12"}, 400, "size", "this model draws 8x8 images"),
    ({"size": "16x8"}, 400, "size", "is not available"),
    ({"prompt": "a purple elephant"}, 400, "prompt", "this model can draw"),
    ({"prompt": ""}, 400, "prompt", "the prompt is empty"),
    ({"genforge_class": 7}, 400, "genforge_class", "class 7 is out of range"),
    ({"response_format": "url"}, 400, "response_format", "use 'b64_json'"),
    ({"n": True}, 400, "n", "not a boolean"),
    ({"quality": "hd"}, 400, "quality", "Extra inputs are not permitted"),
])
def test_bad_settings_are_openai_style_400s(server, change, status, param, needle):
    url, name, _ = server
    body = {"model": name, "prompt": "light", "steps": 2, **change}
    r = httpx.post(url + "/v1/images/generations", json=body, timeout=60)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert needle in err["message"] and err["param"] == param and "\n" not in err["message"]


def test_each_route_serves_its_own_modality(server):
    url, name, _ = server
    r = httpx.post(url + "/v1/images/generations", json={"model": TEXT, "prompt": "light"}, timeout=60)
    assert r.status_code == 400 and r.json()["error"]["code"] == "wrong_modality"
    r = httpx.post(url + "/v1/completions", json={"model": name, "prompt": "x"}, timeout=60)
    assert r.status_code == 400 and "is an image model" in r.json()["error"]["message"]
