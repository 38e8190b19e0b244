"""Speech models on a real server on loopback: OpenAI's `POST /v1/audio/speech`, through the official client too.

A tiny spoken-words model (trained in seconds) is served beside the bundled text model; the audio is the
library's own rendition for the seed the voice name picks, words are said in order, and bad requests are
OpenAI-style 400s naming the words the model knows.
"""
from __future__ import annotations

import io
import wave

import httpx
import numpy as np
import pytest
from serving import running_server
from test_serve import assert_openai_error
from test_speech import train_speech_model

import genforge
from genforge.serve.app import ServeSettings

TEXT = "shakespeare-char"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("served-speech")
    run, home = train_speech_model(tmp)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENFORGE_HOME", str(home))
        sm = genforge.load(run)
        with running_server(ServeSettings(models=[str(run), TEXT]), {str(run): sm, TEXT: genforge.load(TEXT)}) \
                as (app, url), httpx.Client(base_url=url, timeout=300) as client:
            yield client, run.name, sm, url


def _frames(data: bytes) -> np.ndarray:
    with wave.open(io.BytesIO(data)) as w:
        assert w.getframerate() == 22_050 and w.getnchannels() == 1
        return np.frombuffer(w.readframes(w.getnframes()), np.int16)


def test_speech_is_the_library_s_rendition_and_the_official_client_works(server):
    client, name, sm, url = server
    entry = next(m for m in client.get("/v1/models").json()["data"] if m["id"] == name)
    assert entry["genforge_modality"] == "speech" and "seven" in entry["genforge_speech"]["words"]
    r = client.post("/v1/audio/speech", json={"model": name, "input": "seven", "voice": "nova", "steps": 3})
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
    one = _frames(r.content)
    again = _frames(client.post("/v1/audio/speech", json={"model": name, "input": "seven", "voice": "nova",
                                                            "steps": 3}).content)
    assert np.array_equal(one, again)  # one voice name, one rendition
    two = _frames(client.post("/v1/audio/speech", json={"model": name, "input": "seven three", "voice": "nova",
                                                          "steps": 3}).content)
    assert len(two) > len(one) + 0.05 * 22_050  # two words and the gap between them
    import openai

    oc = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
    audio = oc.audio.speech.create(model=name, input="seven", voice="nova", response_format="wav",
                                   extra_body={"steps": 3})
    assert np.array_equal(_frames(audio.content), one)


@pytest.mark.parametrize("body, param", [
    ({"input": "elephant"}, "input"),
    ({"input": ""}, "input"),
    ({"input": "seven", "response_format": "mp3"}, "response_format"),
    ({"input": "seven", "speed": 9}, "speed"),
    ({"input": "seven", "steps": 0}, "steps"),
])
def test_bad_speech_requests_are_openai_errors(server, body, param):
    client, name, _, _ = server
    err = assert_openai_error(client.post("/v1/audio/speech", json={"model": name, **body}), 400)
    assert err["param"] == param, err
