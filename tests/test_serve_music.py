"""Music models on a real server on loopback: `POST /v1/audio/music` as WAV, MIDI and JSON, and its errors.

A tiny event-token model (trained here in seconds on six chorales) is served beside the bundled text model.
The WAV is FluidSynth's real rendering (when installed), the MIDI is the library's own piece for the same
seed, and bad conditions are OpenAI-style 400s that name what the model knows.
"""
from __future__ import annotations

import base64
import io
import wave

import httpx
import numpy as np
import pytest
from serving import running_server
from test_music import chorale_pieces, train_music_model
from test_serve import assert_openai_error

import genforge
from genforge.music import midi_bytes, synthesizer_problem
from genforge.serve.app import ServeSettings

TEXT = "shakespeare-char"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    run, _ = train_music_model(tmp_path_factory.mktemp("served-music"), chorale_pieces(6))
    mm = genforge.load(run)
    with running_server(ServeSettings(models=[str(run), TEXT]), {str(run): mm, TEXT: genforge.load(TEXT)}) \
            as (app, url), httpx.Client(base_url=url, timeout=120) as client:
        yield client, run.name, mm


def test_models_lists_the_music_settings(server):
    client, name, mm = server
    entry = next(m for m in client.get("/v1/models").json()["data"] if m["id"] == name)
    info = entry["genforge_music"]
    assert entry["genforge_modality"] == "music" and info["styles"] == ["user"]
    assert set(info["keys"]) == set(mm.known("key")) and info["wav"] == (synthesizer_problem() is None)


def test_midi_is_the_library_s_piece_for_the_same_seed(server):
    client, name, mm = server
    r = client.post("/v1/audio/music", json={"model": name, "key": "G major", "seconds": 10, "seed": 4,
                                             "response_format": "mid"})
    assert r.status_code == 200 and r.headers["content-type"] == "audio/midi"
    want = mm.compose(1, key="G major", seconds=10, seed=4)[0].piece
    assert r.content == midi_bytes(want)


def test_wav_and_json_carry_real_audio_and_a_piano_roll(server):
    client, name, _ = server
    r = client.post("/v1/audio/music", json={"model": name, "seconds": 6, "seed": 1, "response_format": "json"})
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["seconds"] <= 6 and j["notes"] >= 0 and j["seed"] == 1
    assert base64.b64decode(j["piano_roll_png_b64"])[:4] == b"\x89PNG"
    assert base64.b64decode(j["midi_b64"])[:4] == b"MThd"
    if synthesizer_problem() is not None:
        assert j["wav_b64"] is None and "fluidsynth" in j["wav_problem"]
        r = client.post("/v1/audio/music", json={"model": name, "seconds": 6})
        assert assert_openai_error(r, 503, "synthesizer_missing")["param"] == "response_format"
        return
    with wave.open(io.BytesIO(base64.b64decode(j["wav_b64"]))) as w:
        frames = np.frombuffer(w.readframes(w.getnframes()), np.int16)
        assert w.getnframes() / w.getframerate() > 1.0 and np.abs(frames).max() > 100  # sound, not silence
    r = client.post("/v1/audio/music", json={"model": name, "seconds": 6, "seed": 1})
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav" and r.content[:4] == b"RIFF"


@pytest.mark.parametrize("body, param", [
    ({"style": "jazz"}, "style"),
    ({"key": "H major"}, "key"),
    ({"seconds": 0}, "seconds"),
    ({"seconds": 1000}, "seconds"),
    ({"temperature": True}, "temperature"),
    ({"response_format": "mp3"}, "response_format"),
])
def test_bad_requests_are_openai_errors(server, body, param):
    client, name, _ = server
    err = assert_openai_error(client.post("/v1/audio/music", json={"model": name, **body}), 400)
    assert err["param"] == param and "Traceback" not in err["message"]


def test_a_text_model_is_refused_on_the_music_route(server):
    client, _, _ = server
    assert assert_openai_error(client.post("/v1/audio/music", json={"model": TEXT}), 400, "wrong_modality")["param"] \
        == "model"
