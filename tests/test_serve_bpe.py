"""A byte-level BPE model, served and on the command line: text that is not valid Unicode is one clear error.

A lone surrogate ("\\ud800", which JSON allows and ``surrogateescape`` produces from bad bytes) used to
be a ``TypeError`` from the tokenizer: HTTP 500 "internal error: TypeError", and a traceback from the
CLI. Now it is the codec's ``DataError`` naming the character and its place: an OpenAI 400 naming the
parameter, or one ``genforge: error:`` line.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import pytest
from conftest import make_corpus_text, tiny_config
from serving import running_server
from test_serve import assert_openai_error

import genforge
from genforge.cli import main
from genforge.errors import DataError
from genforge.serve.app import ServeSettings
from genforge.serve.chat_cli import run_chat
from genforge.train.fit import fit

LONE = "\ud800"


@pytest.fixture(scope="module")
def bpe_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bpe-model")
    corpus = root / "corpus.txt"
    corpus.write_text(make_corpus_text(), encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENFORGE_HOME", str(root / "home"))
        fit(tiny_config(root, corpus, codec={"kind": "bpe", "vocab_size": 300}, max_steps=10, eval_interval=10))
    return root / "run"


@pytest.fixture(scope="module")
def bpe(bpe_run: Path):
    return genforge.load(bpe_run)


def test_the_codec_names_a_lone_surrogate(bpe):
    with pytest.raises(DataError, match=r"'\\ud800' at position 3"):
        bpe.codec.encode("abc" + LONE)
    assert bpe.codec.decode(bpe.codec.encode("the king \u2603")) == "the king \u2603"  # real text still round-trips


def test_served_a_lone_surrogate_is_a_400_naming_the_parameter(bpe):
    with running_server(ServeSettings(models=["bpe"]), {"bpe": bpe}) as (_, url), \
            httpx.Client(base_url=url, timeout=60) as c:
        cases = [("/v1/completions", {"prompt": "the king" + LONE, "max_tokens": 4}, "prompt"),
                 ("/v1/completions", {"prompt": [LONE], "max_tokens": 4}, "prompt"),
                 ("/v1/chat/completions", {"messages": [{"role": "user", "content": LONE}], "max_tokens": 4},
                  "messages"),
                 ("/v1/chat/completions", {"messages": [{"role": "system", "content": "x" + LONE},
                                                        {"role": "user", "content": "hi"}]}, "messages"),
                 ("/v1/embeddings", {"input": ["the king", LONE]}, "input")]
        for path, body, param in cases:
            for stream in (False, True) if path != "/v1/embeddings" else (False,):
                extra = {"stream": True} if stream else {}
                raw = json.dumps({"model": "bpe", **body, **extra})  # ASCII: the surrogate travels as \\ud800
                err = assert_openai_error(c.post(path, content=raw, headers={"content-type": "application/json"}),
                                          400)
                assert err["param"] == param and "surrogate" in err["message"], err
        ok = c.post("/v1/completions", json={"model": "bpe", "prompt": "the king", "max_tokens": 4})
        assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] == 4


def test_the_cli_prints_one_line(bpe_run: Path, bpe, capsys):
    assert main(["generate", "--model", str(bpe_run), "--prompt", "the king" + LONE, "--max-tokens", "4"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("genforge: error: text contains '\\ud800' at position 8") and err.count("\n") == 1
    out = io.StringIO()
    lines = iter(["the king" + LONE, "/quit"])
    assert run_chat(bpe, None, {"max_tokens": 4}, lambda _: next(lines), out) == 0
    assert "error: text contains '\\ud800'" in out.getvalue()
