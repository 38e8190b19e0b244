"""``genforge serve --watermark``: every completion and chat reply carries the green-list watermark, row by
row of the continuous batcher, and ``POST /v1/detect`` finds it, over a real server on loopback."""
from __future__ import annotations

import concurrent.futures
import json

import httpx
import pytest
from serving import running_server
from test_serve import assert_openai_error

import genforge
from genforge.cli import build_parser
from genforge.errors import GenforgeError
from genforge.safety.watermark import load_watermark
from genforge.serve.app import ServeSettings
from genforge.serve.state import ServerState

MODEL = "shakespeare-char"
KEY = "serve-test-key-0123456789abcdef"
SETTINGS_KEYS = {"gamma", "delta", "context", "scheme", "z_threshold", "min_tokens"}
HUMAN = ("KING HENRY IV. So shaken as we are, so wan with care, Find we a time for frighted peace to pant, And "
         "breathe short-winded accents of new broils To be commenced in strands afar remote. No more the thirsty "
         "entrance of this soil Shall daub her lips with her own children's blood; No more shall trenching war "
         "channel her fields, Nor bruise her flowerets with the armed hoofs Of hostile paces.")


@pytest.fixture(scope="module")
def tm():
    return genforge.load(MODEL)


@pytest.fixture(scope="module")
def settings_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("wm") / "watermark.json"
    path.write_text(json.dumps({"version": 1, "key": KEY, "gamma": 0.25, "delta": 4.0, "context": 2,
                                "codecs": {}}))
    return str(path)


@pytest.fixture(scope="module")
def server(tm, settings_file):
    settings = ServeSettings(models=[MODEL], max_batch=8, watermark=True, watermark_settings=settings_file)
    with running_server(settings, {MODEL: tm}) as (app, url):
        yield app, url


@pytest.fixture()
def client(server):
    with httpx.Client(base_url=server[1], timeout=120) as c:
        yield c


def detect(client: httpx.Client, text: str) -> dict:
    r = client.post("/v1/detect", json={"model": MODEL, "text": text})
    assert r.status_code == 200, r.text
    return r.json()


def test_concurrent_completions_are_each_watermarked_and_match_in_process_generation(server, tm, settings_file):
    prompts = ["ROMEO:\n", "KING LEAR.\nBlow, winds", "JULIET:\nO", "HAMLET.\nTo be"]

    def one(i: int) -> str:
        with httpx.Client(base_url=server[1], timeout=120) as c:
            r = c.post("/v1/completions", json={"model": MODEL, "prompt": prompts[i], "max_tokens": 150,
                                                "temperature": 1.0, "seed": 10 + i})
            assert r.status_code == 200, r.text
            return r.json()["choices"][0]["text"]

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        texts = list(pool.map(one, range(4)))  # rows of one batch, each after its own previous tokens
    assert server[0].state.genforge.models[MODEL].engine.max_rows_seen >= 2
    mark = load_watermark(settings_file).settings
    with httpx.Client(base_url=server[1], timeout=120) as c:
        for i, text in enumerate(texts):
            assert text == tm.generate(prompts[i], max_tokens=150, temperature=1.0, seed=10 + i, watermark=mark)
            found = detect(c, text)
            assert found["verdict"] == "watermarked" and found["z_score"] > 4, found
            assert found["green_fraction"] > 0.4 and found["p_value"] < 1e-4


def test_chat_replies_and_n_choices_are_watermarked(client):
    r = client.post("/v1/completions", json={"model": MODEL, "prompt": "MACBETH.\n", "max_tokens": 150, "n": 2,
                                             "temperature": 1.0, "seed": 3})
    for choice in r.json()["choices"]:
        assert detect(client, choice["text"])["verdict"] == "watermarked"
    green = scored = 0
    for seed in range(2):
        r = client.post("/v1/chat/completions", json={"model": MODEL, "max_tokens": 120, "seed": seed,
                                                      "messages": [{"role": "user", "content": "Speak, my lord."}]})
        found = detect(client, r.json()["choices"][0]["message"]["content"])
        green, scored = green + found["green_fraction"] * found["scored_tokens"], scored + found["scored_tokens"]
    assert scored >= 30 and green / scored > 0.45, (green, scored)  # 0.25 without the watermark


def test_detect_reports_the_test_and_public_settings_only(client):
    human = detect(client, HUMAN)
    assert human["verdict"] == "not watermarked" and abs(human["z_score"]) < 4 and human["scored_tokens"] >= 25
    assert set(human["settings"]) == SETTINGS_KEYS and human["settings"]["delta"] == 4.0
    assert human["object"] == "watermark.detection" and human["model"] == MODEL
    for key in ("z_score", "p_value", "scored_tokens", "green_fraction", "verdict"):
        assert key in human
    short = detect(client, "ROMEO: Ay me.")
    assert short["verdict"] == "inconclusive" and short["scored_tokens"] < 25
    r = client.post("/v1/detect", json={"model": MODEL, "text": HUMAN})
    assert KEY not in r.text


def test_detect_errors_have_the_openai_shape(client):
    for body, status, code in (({"model": MODEL, "text": "  "}, 400, "invalid_text"),
                               ({"model": "nope", "text": HUMAN}, 404, "model_not_found"),
                               ({"model": MODEL, "text": "tab\there"}, 400, "invalid_text"),
                               ({"model": MODEL}, 400, None),
                               ({"model": MODEL, "text": HUMAN, "key": "x"}, 400, None),
                               ({"model": MODEL, "text": 5}, 400, None)):
        err = assert_openai_error(client.post("/v1/detect", json=body), status, code)
        assert "\n" not in err["message"]


def test_settings_alone_detect_without_marking_and_no_settings_no_detection(tm, settings_file):
    load_watermark(settings_file).register(tm.codec, MODEL)
    only = ServeSettings(models=[MODEL], watermark_settings=settings_file)  # detection only
    with running_server(only, {MODEL: tm}) as (_, url), httpx.Client(base_url=url, timeout=120) as c:
        r = c.post("/v1/completions", json={"model": MODEL, "prompt": "ROMEO:\n", "max_tokens": 200, "seed": 1,
                                            "temperature": 1.0})
        found = detect(c, r.json()["choices"][0]["text"])
        assert found["verdict"] == "not watermarked" and abs(found["z_score"]) < 4
    with running_server(ServeSettings(models=[MODEL]), {MODEL: tm}) as (_, url):
        r = httpx.post(url + "/v1/detect", json={"model": MODEL, "text": HUMAN}, timeout=60)
        assert_openai_error(r, 400, "watermark_unavailable")


def test_a_missing_settings_file_for_detection_stops_the_server_before_it_listens(tm, tmp_path):
    state = ServerState(ServeSettings(models=[MODEL], watermark_settings=str(tmp_path / "none.json")), {MODEL: tm})
    with pytest.raises(GenforgeError, match="no watermark settings at"):
        state.start()
    args = build_parser().parse_args(["serve", "--watermark", "--watermark-settings", "w.json"])
    assert args.watermark is True and args.watermark_settings == "w.json"
