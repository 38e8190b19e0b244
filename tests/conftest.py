"""Shared fixtures: one torch thread, a private GENFORGE_HOME, a small generated corpus, tiny configs."""
from __future__ import annotations

import dataclasses
import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from genforge.config import RunConfig, TrainConfig

torch.set_num_threads(1)

_SUBJECTS = ["the king", "a queen", "my lord", "the old sailor", "her brother", "this night", "the river",
             "our army", "a small bird", "the stone", "his sword", "the wind", "thy father", "no man"]
_VERBS = ["sees", "loves", "fears", "follows", "remembers", "carries", "burns", "forgets", "calls",
          "guards", "waits for", "sings to", "breaks", "finds"]
_OBJECTS = ["the crown", "a letter", "the sea", "his ship", "the fire", "her ring", "the tower",
            "seven horses", "the morning", "a quiet song", "the bridge", "old gold", "the garden"]
_NAMES = ["ROMEO", "JULIET", "HAMLET", "OPHELIA", "LEAR", "PORTIA", "BRUTUS"]
_ENDS = [".", "!", "?", ";", ",", ":"]


def make_corpus_text(n_chars: int = 20_000, seed: int = 0) -> str:
    """Deterministic, varied English-like text: speakers, clauses, numbers, punctuation, newlines."""
    rng = random.Random(seed)
    parts: list[str] = []
    size = 0
    while size < n_chars:
        lines = [f"{rng.choice(_NAMES)}:"]
        for _ in range(rng.randint(1, 4)):
            clauses = []
            for _ in range(rng.randint(1, 3)):
                c = f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}"
                if rng.random() < 0.15:
                    c += f" {rng.randint(2, 99)} times"
                clauses.append(c)
            sentence = ", ".join(clauses)
            lines.append(sentence[0].upper() + sentence[1:] + rng.choice(_ENDS))
        block = "\n".join(lines) + "\n\n"
        parts.append(block)
        size += len(block)
    return "".join(parts)


@pytest.fixture(autouse=True)
def _private_genforge_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own GENFORGE_HOME, so none can read or write the user's data or models."""
    h = tmp_path / "genforge-home"
    monkeypatch.setenv("GENFORGE_HOME", str(h))
    return h


@pytest.fixture()
def home(_private_genforge_home: Path) -> Path:
    """This test's GENFORGE_HOME (a temp folder, not created until something writes into it)."""
    return _private_genforge_home


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    """A ~20 KB UTF-8 text file (deterministic)."""
    p = tmp_path / "corpus.txt"
    p.write_text(make_corpus_text(), encoding="utf-8")
    return p


_TRAIN_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}


def tiny_config(tmp_path: Path, corpus: Path | str, **overrides: Any) -> RunConfig:
    """A seconds-long transformer recipe on ``corpus``: 2 layers, width 32, context 32, batch 8.

    Overrides: whole sections as dicts (``model={...}``, ``codec={...}``, ``data={...}``,
    ``train={...}``, merged into the defaults; ``model={"kind": "rnn"}`` starts from a tiny LSTM) or
    flat keys: TrainConfig fields go to [train], anything else to [model].
    """
    data: dict[str, dict[str, Any]] = {
        "model": {"kind": "transformer", "n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 32},
        "codec": {"kind": "char"},
        "data": {"corpus": str(corpus)},
        "train": {"out_dir": str(tmp_path / "run"), "max_steps": 40, "batch_size": 8, "eval_interval": 20,
                  "eval_steps": 2, "log_interval": 10, "warmup_steps": 5, "progress": False,
                  "precision": "fp32", "device": "cpu", "seed": 1234},
    }
    model = overrides.get("model")
    if isinstance(model, dict) and model.get("kind", "transformer") == "rnn":
        data["model"] = {"kind": "rnn", "cell": "lstm", "n_layer": 2, "n_embd": 32, "hidden": 32, "block_size": 32}
    for key, value in overrides.items():
        if key in data and isinstance(value, dict):
            data[key].update(value)
        elif key in _TRAIN_FIELDS:
            data["train"][key] = value
        else:
            data["model"][key] = value
    return RunConfig.from_dict(data)


@pytest.fixture()
def make_config(tmp_path: Path, corpus: Path, home: Path):
    """``make_config(**overrides)``: ``tiny_config`` bound to this test's tmp_path, corpus and home."""

    def make(**overrides: Any) -> RunConfig:
        return tiny_config(tmp_path, corpus, **overrides)

    return make


def run_benchmark_smoke(name: str, out_dir: Path, *args: str, timeout: int = 900) -> dict[str, Any]:
    """Run ``benchmarks/NAME.py --smoke`` into ``out_dir`` and return the results JSON it wrote."""
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, str(root / "benchmarks" / f"{name}.py"), "--smoke", "--out-dir",
                           str(out_dir), *args], capture_output=True, text=True, timeout=timeout, cwd=root)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return json.loads((out_dir / f"{name}.json").read_text())
