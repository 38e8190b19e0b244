"""Fault injection for atomic writes: a writer process is SIGKILLed at chosen points inside a
checkpoint, export, codec or shard-cache write. Afterwards no half-written folder or file may look
complete, the newest complete version must load, and resuming / the next write must succeed,
reproduce the uninterrupted result and leave no debris.

Every writer is a real process. A driver (this file run as a script) imports genforge once and
forks one child per write, so a kill costs a fork instead of a fresh torch import. Only in the
child, one os primitive (fsync, replace/rename, truncate, unlink) is wrapped so that its n-th
call on a path matching a pattern sends SIGKILL to the child before or after the real call; the
code doing the write is the real one.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import make_corpus_text, tiny_config
from kill_driver import Driver
from safetensors.torch import load_file

import genforge
from genforge.checkpoint import (
    export_model,
    list_checkpoints,
    load_tensors,
    read_meta,
)
from genforge.codecs.bpe import BPECodec
from genforge.codecs.char import CharCodec
from genforge.config import RunConfig
from genforge.data.shards import TokenShards, prepare_shards
from genforge.train.fit import fit

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="needs fork, SIGKILL and /proc/self/fd")

torch.set_num_threads(1)

# A 30-step run checkpointing at 10, 20 and 30 and keeping two: the step-30 save prunes step 10.
RUN = dict(max_steps=30, eval_interval=10, log_interval=1, warmup_steps=5, keep_checkpoints=2)
FINAL_CKPT = re.compile(r"step-\d{8}")
CARD_OLD, CARD_NEW = "# tiny (step 20)\n", "# tiny (step 30)\n"


# =============================================================================== child side
@dataclass
class Reference:
    corpus: Path
    run: Path
    losses: dict[int, float]
    val_losses: list[float]


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    d = Driver(tmp_path_factory.mktemp("driver"))
    yield d
    d.close()


@pytest.fixture(scope="module")
def reference(tmp_path_factory, driver) -> Reference:
    """The uninterrupted run every resumed run must reproduce."""
    tmp = tmp_path_factory.mktemp("reference")
    corpus = tmp / "corpus.txt"
    corpus.write_text(make_corpus_text(), encoding="utf-8")
    cfg = tiny_config(tmp, corpus, **RUN)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENFORGE_HOME", str(tmp / "home"))
        fit(cfg)
    run = Path(cfg.train.out_dir)
    assert [p.name for p in list_checkpoints(run)] == ["step-00000020", "step-00000030"]
    return Reference(corpus, run, _train_losses(run), _val_losses(run))


# ----------------------------------------------------------------------------------- checks
def _records(run: Path) -> list[dict[str, Any]]:
    return [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines() if ln.strip()]


def _train_losses(run: Path) -> dict[int, float]:
    out: dict[int, float] = {}
    for r in _records(run):
        if "loss" in r:
            assert r["step"] not in out, f"step {r['step']} logged twice"
            out[r["step"]] = r["loss"]
    return out


def _val_losses(run: Path) -> list[float]:
    return [r["val_loss"] for r in _records(run) if "val_loss" in r]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_complete(folder: Path) -> dict[str, Any]:
    """A model folder whose genforge.json exists and whose every recorded file matches its hash."""
    assert (folder / "genforge.json").is_file(), f"{folder.name} looks final but has no genforge.json"
    meta = read_meta(folder)
    assert "model.safetensors" in meta["files"]
    for name, digest in meta["files"].items():
        assert (folder / name).is_file(), f"{folder.name}/{name} is missing"
        assert _sha256(folder / name) == digest, f"{folder.name}/{name} does not match genforge.json"
    return meta


def assert_no_half_checkpoints(run: Path) -> None:
    """Every folder under a final checkpoint name is complete (temp names may hold anything)."""
    for p in (run / "checkpoints").iterdir():
        if FINAL_CKPT.fullmatch(p.name):
            assert_complete(p)


def assert_newest_loads(run: Path, step: int) -> Path:
    ckpts = list_checkpoints(run)
    assert ckpts and ckpts[-1].name == f"step-{step:08d}", [p.name for p in ckpts]
    for p in ckpts:
        assert_complete(p)
    meta = read_meta(ckpts[-1])
    assert meta["step"] == step
    load_tensors(ckpts[-1], "model.safetensors", meta)
    load_tensors(ckpts[-1], "trainer.safetensors", meta)
    assert len(genforge.load(str(run)).generate("ROMEO:", max_tokens=4, seed=0)) == 4
    return ckpts[-1]


def assert_resumes_exactly(cfg: RunConfig, ref: Reference) -> None:
    """``fit --resume`` finishes the run, logs each step once, matches the uninterrupted run and
    leaves only the checkpoints that run kept."""
    run = Path(cfg.train.out_dir)
    result = fit(cfg, resume=True)
    assert result.step == 30
    got = _train_losses(run)
    assert sorted(got) == sorted(ref.losses) == list(range(1, 31))
    for s in got:
        assert got[s] == pytest.approx(ref.losses[s], abs=1e-5), s
    assert _val_losses(run) == pytest.approx(ref.val_losses, abs=1e-5)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-00000020", "step-00000030"]
    a = load_file(list_checkpoints(ref.run)[-1] / "model.safetensors")
    b = load_file(list_checkpoints(run)[-1] / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=1e-5, rtol=0)


def _listing(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


# ========================================================================= training checkpoints
S20 = r"/checkpoints/step-00000020[^/]*"
INTO_PLACE_20 = r"/checkpoints/step-00000020\.tmp-\d+ -> .*/checkpoints/step-00000020$"
TRAINING_KILLS = {  # point: (kill, newest complete step afterwards)
    "weights-written": (dict(op="fsync", pattern=S20 + r"/model\.safetensors$", when="before"), 10),
    "optimizer-written": (dict(op="fsync", pattern=S20 + r"/trainer\.safetensors$", when="before"), 10),
    "metadata-written": (dict(op="fsync", pattern=S20 + r"/genforge\.json$", when="before"), 10),
    "before-rename": (dict(op="move", pattern=INTO_PLACE_20, when="before"), 10),
    "after-rename": (dict(op="move", pattern=INTO_PLACE_20, when="after"), 20),
    # the step-30 save prunes step 10: killed with one of its files deleted
    "while-pruning": (dict(op="unlink", pattern=r"/checkpoints/step-00000010[^/]*/[^/]+$", when="after"), 30),
}


@pytest.mark.parametrize("point", list(TRAINING_KILLS))
def test_training_killed_inside_a_checkpoint_write_resumes_exactly(point: str, driver: Driver, reference: Reference,
                                                                   tmp_path: Path, home: Path) -> None:
    kill, newest = TRAINING_KILLS[point]
    cfg = tiny_config(tmp_path, reference.corpus, **RUN)
    run = Path(cfg.train.out_dir)
    driver.kill_during("fit", kill, tmp_path, home, config=cfg.to_dict(), resume=False)

    assert_no_half_checkpoints(run)
    assert_newest_loads(run, newest)
    assert_resumes_exactly(cfg, reference)


# ============================================================== replacing a checkpoint in place
OLD_20 = r"/checkpoints/step-00000020 -> .*/checkpoints/step-00000020\.old-\d+$"
REPLACE_KILLS = {
    "old-moved-aside": dict(op="move", pattern=OLD_20, when="after"),  # the name is briefly free
    "new-moved-in": dict(op="move", pattern=INTO_PLACE_20, when="after"),
    "old-half-deleted": dict(op="unlink", pattern=r"/checkpoints/step-00000020\.old-\d+/[^/]+$", when="after"),
}


@pytest.mark.parametrize("point", list(REPLACE_KILLS))
def test_killed_checkpoint_replacement_keeps_a_complete_copy(point: str, driver: Driver, reference: Reference,
                                                             tmp_path: Path, home: Path) -> None:
    cfg = tiny_config(tmp_path, reference.corpus, **RUN)
    run = Path(cfg.train.out_dir)
    shutil.copytree(reference.run, run)  # the run as it stood after its step-20 checkpoint
    shutil.rmtree(run / "checkpoints" / "step-00000030")
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _records(run) if r["step"] <= 20))
    step20 = run / "checkpoints" / "step-00000020"
    weights = _sha256(step20 / "model.safetensors")
    driver.kill_during("resave", REPLACE_KILLS[point], tmp_path, home, ckpt=str(step20))

    assert_no_half_checkpoints(run)
    newest = assert_newest_loads(run, 20)
    assert _sha256(newest / "model.safetensors") == weights
    assert_resumes_exactly(cfg, reference)


# =========================================================================== exported models
INTO_PLACE_EXPORT = r"/models/tiny\.tmp-\d+ -> .*/models/tiny$"
OLD_EXPORT = r"/models/tiny -> .*/models/tiny\.old-\d+$"
EXPORT_KILLS = {  # point: (re-export over an older export?, kill, what "models/tiny" holds afterwards)
    "weights-written": (False, dict(op="fsync", pattern=r"/models/tiny[^/]*/model\.safetensors$", when="before"),
                        "absent"),
    "card-written": (False, dict(op="fsync", pattern=r"/models/tiny[^/]*/MODEL_CARD\.md$", when="before"),
                     "absent"),
    "metadata-written": (False, dict(op="fsync", pattern=r"/models/tiny[^/]*/genforge\.json$", when="before"),
                         "absent"),
    "before-rename": (False, dict(op="move", pattern=INTO_PLACE_EXPORT, when="before"), "absent"),
    "after-rename": (False, dict(op="move", pattern=INTO_PLACE_EXPORT, when="after"), "new"),
    "re-export-before-moving-aside": (True, dict(op="move", pattern=OLD_EXPORT, when="before"), "old"),
    # between the two renames of a replacement the name is free; the old export waits beside it
    "re-export-old-moved-aside": (True, dict(op="move", pattern=OLD_EXPORT, when="after"), "absent"),
    "re-export-after-rename": (True, dict(op="move", pattern=INTO_PLACE_EXPORT, when="after"), "new"),
}


def _export_state(dst: Path) -> str:
    """"absent", or "old"/"new" for a complete export whose weights and card belong together."""
    if not dst.exists():
        return "absent"
    meta = assert_complete(dst)
    card = dst / "MODEL_CARD.md"
    assert card.is_file(), "an export was committed without its MODEL_CARD.md"
    version = {20: "old", 30: "new"}[meta["step"]]
    assert card.read_text(encoding="utf-8") == {"old": CARD_OLD, "new": CARD_NEW}[version]
    assert len(genforge.load(str(dst)).generate("ROMEO:", max_tokens=4, seed=0)) == 4
    return version


@pytest.mark.parametrize("point", list(EXPORT_KILLS))
def test_killed_export_leaves_a_complete_model_or_none(point: str, driver: Driver, reference: Reference,
                                                       tmp_path: Path, home: Path) -> None:
    again, kill, expected = EXPORT_KILLS[point]
    old_src, new_src = list_checkpoints(reference.run)
    dst = tmp_path / "models" / "tiny"
    if again:
        export_model(old_src, dst, "fp32", CARD_OLD)
        assert _export_state(dst) == "old"
    driver.kill_during("export", kill, tmp_path, home, src=str(new_src), dst=str(dst), card=CARD_NEW)

    assert _export_state(dst) == expected
    if expected == "absent" and again:  # the old export is intact beside the free name
        (aside,) = [p for p in dst.parent.iterdir() if p.name.startswith("tiny.old-")]
        assert _export_state(aside) == "old"
    export_model(new_src, dst, "fp32", CARD_NEW)  # the next export succeeds and clears the debris
    assert _export_state(dst) == "new"
    assert _listing(dst.parent) == ["tiny"]


# ================================================================================ codec files
CODEC_KILLS = {  # point: (kill, which tokenizer.json is there afterwards)
    "written": (dict(op="fsync", pattern=r"/codec/[^/]*tokenizer\.json[^/]*$", when="before"), "old"),
    "before-rename": (dict(op="move", pattern=r"tokenizer\.json[^/]* -> .*/codec/tokenizer\.json$", when="before"),
                      "old"),
    "after-rename": (dict(op="move", pattern=r"tokenizer\.json[^/]* -> .*/codec/tokenizer\.json$", when="after"),
                     "new"),
}


@pytest.mark.parametrize("point", list(CODEC_KILLS))
def test_killed_tokenizer_save_keeps_the_old_or_the_new_file(point: str, driver: Driver, tmp_path: Path,
                                                             home: Path) -> None:
    kill, expected = CODEC_KILLS[point]
    old_text, new_text = make_corpus_text(3000, seed=1), make_corpus_text(3000, seed=2)
    old, new = BPECodec.train([old_text], vocab_size=300), BPECodec.train([new_text], vocab_size=300)
    assert old != new
    path = old.save(tmp_path / "codec" / "tokenizer.json")
    driver.kill_during("bpe_save", kill, tmp_path, home, text=new_text, path=str(path))

    assert BPECodec.load(path) == {"old": old, "new": new}[expected]
    new.save(path)
    assert BPECodec.load(path) == new
    assert _listing(path.parent) == ["tokenizer.json"]


RUN_CODEC = r"/run/codec\.json$"
RUN_CODEC_KILLS = {  # point: (kill, is run/codec.json there afterwards)
    "written": (dict(op="fsync", pattern=r"/run/[^/]*codec[^/]*$", when="before"), False),
    "before-rename": (dict(op="move", pattern=r"/run/[^/]*codec[^/]* -> .*" + RUN_CODEC, when="before"), False),
    "after-rename": (dict(op="move", pattern=r"/run/[^/]*codec[^/]* -> .*" + RUN_CODEC, when="after"), True),
}


@pytest.mark.parametrize("point", list(RUN_CODEC_KILLS))
def test_training_killed_writing_codec_json_starts_cleanly(point: str, driver: Driver, reference: Reference,
                                                           tmp_path: Path, home: Path) -> None:
    kill, present = RUN_CODEC_KILLS[point]
    cfg = tiny_config(tmp_path, reference.corpus, **{**RUN, "max_steps": 10})
    run = Path(cfg.train.out_dir)
    want = json.loads((reference.run / "codec.json").read_text())
    driver.kill_during("fit", kill, tmp_path, home, config=cfg.to_dict(), resume=False)

    assert (run / "codec.json").is_file() == present
    if present:
        assert json.loads((run / "codec.json").read_text()) == want
    assert fit(cfg).step == 10  # nothing was checkpointed: a fresh start works
    assert json.loads((run / "codec.json").read_text()) == want
    assert not [p.name for p in run.iterdir() if "tmp" in p.name]


# =============================================================================== shard cache
SHARD = r"/cache/[0-9a-f]{16}$"
SHARD_INTO_PLACE = r"/cache/[^/]*\.tmp-[^/]* -> .*" + SHARD
SHARD_KILLS = {  # point: (a corrupt cache is there first?, kill, state of the cache folder afterwards)
    "tokens-written": (False, dict(op="truncate", pattern=r"/cache/[^/]*/train\.bin$", when="before"), "absent"),
    "metadata-written": (False, dict(op="fsync", pattern=r"/cache/[^/]*/meta\.json$", when="before"), "absent"),
    "before-rename": (False, dict(op="move", pattern=SHARD_INTO_PLACE, when="before"), "absent"),
    "after-rename": (False, dict(op="move", pattern=SHARD_INTO_PLACE, when="after"), "complete"),
    "rebuild-old-moved-aside": (True, dict(op="move", pattern=r"/cache/[0-9a-f]{16} -> ", when="after"), "absent"),
    "rebuild-after-rename": (True, dict(op="move", pattern=SHARD_INTO_PLACE, when="after"), "complete"),
}


def _same_shards(a: TokenShards, b: TokenShards) -> bool:
    return a.meta == b.meta and np.array_equal(a.train, b.train) and np.array_equal(a.val, b.val)


@pytest.mark.parametrize("point", list(SHARD_KILLS))
def test_killed_shard_preparation_is_never_read_as_complete(point: str, driver: Driver, reference: Reference,
                                                            tmp_path: Path, home: Path) -> None:
    corrupt_first, kill, expected = SHARD_KILLS[point]
    codec = CharCodec.from_text(reference.corpus.read_text(encoding="utf-8"))
    ref = prepare_shards(reference.corpus, codec, tmp_path / "ref-cache")
    cache = tmp_path / "cache"
    if corrupt_first:  # an incomplete cache folder (as an older genforge could leave) gets rebuilt
        bad = prepare_shards(reference.corpus, codec, cache)
        os.truncate(bad.path / "val.bin", (bad.path / "val.bin").stat().st_size - 2)
        del bad
    driver.kill_during("prepare", kill, tmp_path, home, corpus=str(reference.corpus), codec=codec.to_dict(),
                       cache=str(cache))

    folder = cache / ref.path.name
    if expected == "complete":
        assert _same_shards(TokenShards(folder), ref)
    else:
        assert not folder.exists()
    shards = prepare_shards(reference.corpus, codec, cache)
    assert shards.path == folder and _same_shards(shards, ref)
    assert _listing(cache) == [folder.name]


# ============================================================================ the write helper
def test_atomic_write_helper_keeps_the_old_file_on_error_and_removes_dead_writers_temps(tmp_path: Path) -> None:
    from genforge.atomic import atomic_write_bytes, atomic_write_text

    target = atomic_write_text(tmp_path / "f.json", "old")
    with pytest.raises(TypeError):
        atomic_write_bytes(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_text() == "old" and _listing(tmp_path) == ["f.json"]
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".f.json.tmp-{int(dead.stdout)}-abc"  # as a killed writer leaves it
    stale.write_text("half")
    live = tmp_path / f".f.json.tmp-{os.getppid()}-abc"  # a writer that is still running
    live.write_text("busy")
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert _listing(tmp_path) == sorted(["f.json", live.name])
    no_torch = "import sys, genforge.atomic; assert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", no_torch]).returncode == 0
