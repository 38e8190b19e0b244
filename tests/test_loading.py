"""Loading a model folder: the pipeline its genforge.json names, and one clear line for every way a
genforge.json can be wrong (types, sizes, codec against weights, unknown kinds) before any allocation."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

import genforge
from genforge.errors import CheckpointError
from genforge.pipelines.text import TextModel
from genforge.store import BUNDLED


def edited(tmp_path: Path, change) -> Path:
    """A copy of the bundled shakespeare-char whose genforge.json ``change(meta)`` edited."""
    folder = tmp_path / "model"
    shutil.copytree(BUNDLED / "shakespeare-char", folder)
    meta = json.loads((folder / "genforge.json").read_text())
    change(meta)
    (folder / "genforge.json").write_text(json.dumps(meta))
    return folder


def one_line(folder: Path, *needles: str) -> str:
    with pytest.raises(CheckpointError) as info:
        genforge.load(folder)
    msg = str(info.value)
    assert "\n" not in msg and all(n in msg for n in needles), msg
    return msg


def test_old_checkpoints_without_a_pipeline_load_as_text() -> None:
    assert "pipeline" not in json.loads((BUNDLED / "shakespeare-char" / "genforge.json").read_text())
    assert isinstance(genforge.load("shakespeare-char"), TextModel)


@pytest.mark.parametrize("key,value,needle", [
    ("model", "transformer", "'model' must be an object"), ("version", "1", "'version' must be an integer"),
    ("files", [], "'files' must be an object"), ("codec", "char", "'codec' must be an object"),
    ("pipeline", 3, "'pipeline' must be a string"),
])
def test_wrong_container_types_are_one_line(tmp_path: Path, key: str, value, needle: str) -> None:
    one_line(edited(tmp_path, lambda m: m.__setitem__(key, value)), needle)


def test_a_huge_config_is_refused_before_anything_is_allocated(tmp_path: Path) -> None:
    folder = edited(tmp_path, lambda m: m["model"].update(n_layer=100_000, n_embd=4096, n_head=4))
    t0 = time.perf_counter()
    one_line(folder, "implies", "parameters", "do not belong together")
    assert time.perf_counter() - t0 < 5  # building such a model would take minutes and terabytes


def test_a_codec_smaller_than_the_model_is_refused(tmp_path: Path) -> None:
    def shrink(meta: dict) -> None:
        meta["codec"]["chars"] = meta["codec"]["chars"][:-3]  # 81 characters for an 84-token model

    one_line(edited(tmp_path, shrink), "codec has 81 tokens", "vocabulary is 84")


def test_an_unknown_pipeline_names_the_known_ones(tmp_path: Path) -> None:
    one_line(edited(tmp_path, lambda m: m.__setitem__("pipeline", "hologram")), "'hologram'", "'text'")


def test_an_unknown_model_kind_names_the_known_ones(tmp_path: Path) -> None:
    one_line(edited(tmp_path, lambda m: m["model"].__setitem__("kind", "mamba")), "'mamba'", "'transformer'", "'rnn'")
