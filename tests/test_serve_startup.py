"""``genforge serve`` checks its flags and loads every model before it listens: one line and exit 2.

A missing, pickled or corrupt model, a chat template this genforge does not know, ``--max-batch 0``
(which used to hang every request with the engine spinning) and ``--port 99999`` (which used to
listen on another port) never reach the web server.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from genforge.cli import main
from genforge.errors import ConfigError
from genforge.serve.app import ServeSettings
from genforge.store import BUNDLED

MODEL = BUNDLED / "shakespeare-char"


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("broken-models")
    out = {"truncated": root / "truncated", "pickled": root / "pickled", "template": root / "template"}
    shutil.copytree(MODEL, out["truncated"])
    weights = out["truncated"] / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:4096])
    out["pickled"].mkdir()
    torch.save(load_file(MODEL / "model.safetensors"), out["pickled"] / "model.pt")
    shutil.copytree(MODEL, out["template"])
    meta = json.loads((out["template"] / "genforge.json").read_text())
    (out["template"] / "genforge.json").write_text(json.dumps({**meta, "chat_template": "no-such-template"}))
    return out


@pytest.fixture(autouse=True)
def never_listen(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every case here must fail before the web server starts; if one did not, fail instead of serving."""
    import uvicorn

    def run(*args, **kwargs):
        raise AssertionError("the server started listening")

    monkeypatch.setattr(uvicorn, "run", run)


def one_line_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("genforge: error: "), captured.err
    assert "serving" not in captured.out  # it never got as far as listening
    return lines[0]


@pytest.mark.parametrize("case,words", [
    ("truncated", ["model.safetensors", "truncated"]),
    ("pickled", ["model.pt", "pickle"]),
    ("template", ["no-such-template", "chat template", "cannot serve"]),
])
def test_a_model_that_cannot_be_served_is_one_line_before_listening(capsys, broken, case, words):
    line = one_line_error(capsys, ["serve", "--model", str(broken[case]), "--port", "1"])
    for word in words:
        assert word in line, line


@pytest.mark.parametrize("flags,words", [
    (["--max-batch", "0"], ["--max-batch 0", "1 to"]),
    (["--max-concurrent", "0"], ["--max-concurrent 0"]),
    (["--port", "99999"], ["--port 99999", "1 to 65535"]),
    (["--port", "0"], ["--port 0"]),
])
def test_bad_flags_are_one_line(capsys, flags, words):
    line = one_line_error(capsys, ["serve", "--model", "no-such-model", *flags])  # flags are checked first
    for word in words:
        assert word in line, line


def test_settings_refuse_values_that_would_hang_the_engine():
    with pytest.raises(ConfigError, match="--max-batch 0"):
        ServeSettings(max_batch=0)
    with pytest.raises(ConfigError, match="--max-n"):
        ServeSettings(max_n=0)
    with pytest.raises(ConfigError, match="no model"):
        ServeSettings(models=[])


def test_a_missing_model_is_one_line_and_exit_2_from_the_command(tmp_path):
    env = {**os.environ, "GENFORGE_HOME": str(tmp_path / "home")}
    proc = subprocess.run([sys.executable, "-m", "genforge", "serve", "--model", "no-such-model", "--port", "1"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "no-such-model" in proc.stderr

