"""Molecule models on a real server on loopback: `/v1/completions` from scratch and from a fragment, scores, drawings.

A tiny SMILES LSTM (trained here in a few seconds on 500 MOSES test molecules) is served beside the bundled
text model. Each choice is the library's own molecule for the same settings and seed, carries
``genforge_molecule`` (whole SMILES, validity, QED, logP, SA, weight), and the official openai client still
parses the response; a fragment the codec cannot read is an OpenAI-style 400 naming the bad part.
"""
from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from serving import running_server, sse, stream_text
from test_serve import assert_openai_error

import genforge
from genforge.serve.app import ServeSettings
from genforge.train.fit import fit

TEXT = "shakespeare-char"
KEYS = {"smiles", "valid", "qed", "logp", "sa", "weight"}


def train_molecule_model(tmp: Path) -> Path:
    """A tiny SMILES model (~5 s on one core) that writes some valid molecules at temperature 0.7."""
    from conftest import tiny_config

    from genforge.data.molecules import moses_smiles

    smi = tmp / "mols.smi"
    smi.write_text("".join(s + "\n" for s in moses_smiles("test")[:500]))
    cfg = tiny_config(tmp, smi, model={"kind": "rnn", "n_layer": 1, "n_embd": 32, "hidden": 64, "block_size": 64},
                      codec={"kind": "smiles"}, max_steps=600, batch_size=16, lr=1e-2, eval_interval=600,
                      log_interval=1000)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENFORGE_HOME", str(tmp / "home"))
        return fit(cfg).out_dir


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    run = train_molecule_model(tmp_path_factory.mktemp("served-molecules"))
    mm = genforge.load(run)
    settings = ServeSettings(models=[str(run), TEXT])
    with running_server(settings, {str(run): mm, TEXT: genforge.load(TEXT)}) as (app, url), \
            httpx.Client(base_url=url, timeout=60) as client:
        yield client, run.name, mm


def complete(client: httpx.Client, name: str, **body) -> dict:
    r = client.post("/v1/completions", json={"model": name, "temperature": 0.7, **body})
    assert r.status_code == 200, r.text
    return r.json()


def test_from_scratch_the_library_s_molecules_with_their_scores(server):
    client, name, mm = server
    r = complete(client, name, prompt="", n=6, seed=5)
    assert r["object"] == "text_completion" and len(r["choices"]) == 6
    want = [mm.sample(1, seed=5 + i, temperature=0.7)[0] for i in range(6)]  # choice i: seed + i
    assert [c["text"] for c in r["choices"]] == want
    for c in r["choices"]:
        mol = c["genforge_molecule"]
        assert set(mol) == KEYS and mol["smiles"] == c["text"] and "\n" not in c["text"]
        assert c["finish_reason"] in ("stop", "length")
        if mol["valid"]:
            assert 0 <= mol["qed"] <= 1 and 1 <= mol["sa"] <= 10 and mol["weight"] > 0
        else:
            assert mol["qed"] is None and mol["logp"] is None
    assert any(c["genforge_molecule"]["valid"] for c in r["choices"])


def test_from_a_fragment_text_continues_it_and_echo_gives_the_whole_smiles(server):
    client, name, mm = server
    r = complete(client, name, prompt=" CC(=O)N ", n=3, seed=2)
    want = mm.sample(1, prompt="CC(=O)N", seed=2, temperature=0.7)[0]
    first = r["choices"][0]
    assert "CC(=O)N" + first["text"] == first["genforge_molecule"]["smiles"] == want
    echoed = complete(client, name, prompt="CC(=O)N", n=3, seed=2, echo=True)
    assert [c["text"] for c in echoed["choices"]] == [c["genforge_molecule"]["smiles"] for c in r["choices"]]
    streamed = client.post("/v1/completions", json={"model": name, "prompt": "CC(=O)N", "n": 3, "seed": 2,
                                                    "temperature": 0.7, "stream": True})
    chunks = sse(streamed)
    assert chunks[-1] == "[DONE]"
    assert [stream_text(chunks, i) for i in range(3)] == [c["text"] for c in r["choices"]]
    last = {ch["index"]: ch for c in chunks[:-1] for ch in c["choices"] if ch["finish_reason"]}
    assert [last[i]["genforge_molecule"] for i in range(3)] == [c["genforge_molecule"] for c in r["choices"]]


@pytest.mark.parametrize("prompt,needle", [("c1cc!c", "'!' at position 4"), ("CC[Xe]", "'[Xe]'"),
                                           ("CCO\nCCN", "one line")])
def test_a_fragment_the_codec_cannot_read_is_a_400_naming_it(server, prompt, needle):
    client, name, _ = server
    r = client.post("/v1/completions", json={"model": name, "prompt": prompt})
    err = assert_openai_error(r, 400, "invalid_prompt")
    assert err["param"] == "prompt" and needle in err["message"] and "\n" not in err["message"]


def test_models_list_it_and_other_routes_refuse_it(server):
    client, name, _ = server
    models = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
    mol = models[name]
    assert mol["genforge_modality"] == "molecule" and mol["genforge_chat"] is False
    assert mol["genforge_molecule"]["scores"] == ["qed", "logp", "sa", "weight"]
    assert mol["genforge_sampling"]["defaults"]["max_tokens"] == 120
    assert models[TEXT]["genforge_modality"] == "text"
    r = client.post("/v1/chat/completions", json={"model": name, "messages": [{"role": "user", "content": "C"}]})
    assert "molecule model" in assert_openai_error(r, 400, "wrong_modality")["message"]
    text = client.post("/v1/completions", json={"model": TEXT, "prompt": "ROMEO", "max_tokens": 5}).json()
    assert len(text["choices"][0]["text"]) == 5 and "genforge_molecule" not in text["choices"][0]


def test_draw_returns_rdkit_svg_for_valid_smiles_only(server):
    client, _, _ = server
    smiles = ["CC(=O)Nc1ccccc1", "C1CC", "C |$<script>alert(1)</script>$|", "<svg onload=alert(1)>", ""]
    r = client.post("/v1/molecules/draw", json={"smiles": smiles, "width": 200, "height": 160})
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert [d["smiles"] for d in data] == smiles and [d["valid"] for d in data] == [True] + [False] * 4
    svg = data[0]["svg"]
    assert svg.startswith("<?xml") and "<svg" in svg and "width='200px'" in svg and 0 < data[0]["qed"] < 1
    assert "script" not in svg and "onload" not in svg and all(d["svg"] is None for d in data[1:])
    assert json.loads(client.post("/v1/molecules/draw", json={"smiles": "CCO"}).content)["data"][0]["valid"]
    assert_openai_error(client.post("/v1/molecules/draw", json={"smiles": ["C"] * 65}), 400, "invalid_value")
    assert_openai_error(client.post("/v1/molecules/draw", json={"smiles": []}), 400, "invalid_value")


def test_the_openai_client_parses_molecule_completions(server):
    openai = pytest.importorskip("openai")
    client, name, _ = server
    cl = openai.OpenAI(base_url=str(client.base_url).rstrip("/") + "/v1", api_key="unused", max_retries=0, timeout=60)
    r = cl.completions.create(model=name, prompt="", n=3, seed=5, temperature=0.7)
    assert len(r.choices) == 3 and all(c.finish_reason in ("stop", "length") for c in r.choices)
    assert [c.model_extra["genforge_molecule"]["smiles"] for c in r.choices] == [c.text for c in r.choices]
    with pytest.raises(openai.BadRequestError) as ei:
        cl.completions.create(model=name, prompt="c1cc!c")
    assert "'!'" in str(ei.value)
