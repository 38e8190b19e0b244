"""Training: the fit loop's outputs, exact resume, refusing to clobber, checkpoint safety, DDP, schedule."""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import make_corpus_text, tiny_config
from safetensors.torch import load_file, save_file

import genforge
from genforge.checkpoint import (
    list_checkpoints,
    model_tensors,
    prune_checkpoints,
    read_meta,
    save_checkpoint,
)
from genforge.config import RunConfig
from genforge.errors import CheckpointError, ConfigError, GenforgeError
from genforge.models.transformer import GPT, GPTConfig
from genforge.train.fit import fit
from genforge.train.optim import lr_at

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------- helpers
def records(run_dir: Path) -> list[dict]:
    return [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines() if ln.strip()]


def train_lines(run_dir: Path) -> dict[int, dict]:
    """{step: train record}; fails on a duplicate step."""
    out: dict[int, dict] = {}
    for r in records(run_dir):
        if "loss" in r:
            assert r["step"] not in out, f"step {r['step']} logged twice"
            out[r["step"]] = r
    return out


def tree_hashes(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def rehash(ckpt: Path, name: str = "model.safetensors") -> None:
    """Make genforge.json's recorded hash match an edited file (a consistent but bad checkpoint)."""
    meta = json.loads((ckpt / "genforge.json").read_text())
    meta["files"][name] = hashlib.sha256((ckpt / name).read_bytes()).hexdigest()
    (ckpt / "genforge.json").write_text(json.dumps(meta))


# ------------------------------------------------------------------- one shared trained run
@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A 60-step run (checkpoints at 20/40/60, two kept); tests copy it before changing anything."""
    tmp = tmp_path_factory.mktemp("trained")
    corpus = tmp / "corpus.txt"
    corpus.write_text(make_corpus_text(), encoding="utf-8")
    cfg = tiny_config(tmp, corpus, max_steps=60, log_interval=5, eval_interval=20, keep_checkpoints=2)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENFORGE_HOME", str(tmp / "home"))
        result = fit(cfg)
    assert result.step == 60
    return Path(cfg.train.out_dir)


def test_fit_writes_metrics_plot_and_checkpoints(trained: Path) -> None:
    recs = records(trained)
    train = [r for r in recs if "loss" in r]
    evals = [r for r in recs if "val_loss" in r]
    assert [r["step"] for r in train] == list(range(5, 61, 5))
    assert [r["step"] for r in evals] == [20, 40, 60]
    for r in train:
        assert math.isfinite(r["loss"]) and r["lr"] > 0 and r["tokens_per_s"] > 0 and r["grad_norm"] >= 0
    for r in evals:
        assert math.isfinite(r["val_loss"])
        assert r["val_bits_per_token"] == pytest.approx(r["val_loss"] / math.log(2), rel=1e-9)
    # learning happens: clearly below the first logged loss, and below a uniform guess
    vocab = len(json.loads((trained / "codec.json").read_text())["chars"])
    assert train[-1]["loss"] < train[0]["loss"] - 0.3
    assert evals[-1]["val_loss"] < math.log(vocab)

    png = (trained / "loss.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    with Image.open(trained / "loss.png") as im:
        im.load()
        assert im.width > 100 and im.height > 100
        colors = im.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colors is not None and len(colors) > 10  # axes, two curves, text: not a blank canvas
    assert not list(trained.glob("*.tmp*"))

    ckpts = list_checkpoints(trained)
    assert [p.name for p in ckpts] == ["step-00000040", "step-00000060"]  # keep_checkpoints=2
    for ck in ckpts:
        assert {p.name for p in ck.iterdir()} == {"genforge.json", "model.safetensors", "trainer.safetensors",
                                                  "MODEL_CARD.md"}
        meta = read_meta(ck)
        for name, digest in meta["files"].items():  # the recorded hashes are the files' hashes
            assert hashlib.sha256((ck / name).read_bytes()).hexdigest() == digest
    meta = read_meta(ckpts[-1])
    assert meta["step"] == 60
    assert meta["metrics"]["val_loss"] == evals[-1]["val_loss"]
    tm = genforge.load(trained)
    assert tm.path == ckpts[-1]
    assert meta["parameters"] == sum(p.numel() for p in tm.model.parameters()) > 0
    assert "lm_head.weight" not in load_file(ckpts[-1] / "model.safetensors")  # tied: stored once


def test_trained_model_beats_uniform_and_generates(trained: Path) -> None:
    tm = genforge.load(trained)
    text = make_corpus_text(3000, seed=99)  # unseen text from the same distribution
    vocab = tm.codec.vocab_size
    assert tm.perplexity(text) < vocab * 0.5
    out = tm.generate("ROMEO:", max_tokens=20, seed=3)
    assert len(out) == 20 and out == tm.generate("ROMEO:", max_tokens=20, seed=3)


# ------------------------------------------------------------------------------ exact resume
RESUME = dict(max_steps=30, eval_interval=10, log_interval=1, warmup_steps=5, grad_accum=2,
              keep_checkpoints=5)
KINDS = {
    "transformer": dict(dropout=0.1),
    "lstm": dict(model={"kind": "rnn", "cell": "lstm", "dropout": 0.1}),
    "transformer-muon": dict(dropout=0.1, optimizer="muon", position="rope", activation="relu2"),
}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """Run A per model kind, trained once per module: {kind: out_dir}."""
    cache: dict[str, Path] = {}
    tmp = tmp_path_factory.mktemp("resume-ref")
    corpus = tmp / "corpus.txt"
    corpus.write_text(make_corpus_text(), encoding="utf-8")

    def get(kind: str) -> tuple[Path, Path]:
        if kind not in cache:
            cfg = tiny_config(tmp / kind, corpus, **RESUME, **KINDS[kind])
            with pytest.MonkeyPatch.context() as mp:
                mp.setenv("GENFORGE_HOME", str(tmp / "home"))
                fit(cfg)
            cache[kind] = Path(cfg.train.out_dir)
        return cache[kind], corpus

    return get


@pytest.mark.parametrize("kind,k", [("transformer", 10), ("transformer", 17), ("lstm", 10), ("transformer-muon", 10)])
def test_resume_is_exact(kind: str, k: int, uninterrupted, tmp_path: Path, home: Path) -> None:
    ref_dir, corpus = uninterrupted(kind)
    cfg = tiny_config(tmp_path, corpus, **RESUME, **KINDS[kind])
    first = fit(cfg, stop_after=k)
    assert first.step == k
    assert list_checkpoints(cfg.train.out_dir)[-1].name == f"step-{k:08d}"
    assert max(train_lines(Path(cfg.train.out_dir))) == k
    second = fit(cfg, resume=True)
    assert second.step == 30

    # The promise: in one process on one machine with the same thread count, resuming is bit for bit
    # (same float operations in the same order); across processes (DDP below) it is to ~1e-5.
    ref, got = train_lines(ref_dir), train_lines(Path(cfg.train.out_dir))
    assert sorted(got) == sorted(ref) == list(range(1, 31))
    for s in range(1, 31):
        assert got[s]["loss"] == ref[s]["loss"], s
        assert got[s]["lr"] == ref[s]["lr"], s
    assert second.val_loss == records(ref_dir)[-1]["val_loss"]
    a = list_checkpoints(ref_dir)[-1]
    b = list_checkpoints(cfg.train.out_dir)[-1]
    assert a.name == b.name == "step-00000030"
    for name in ("model.safetensors", "trainer.safetensors"):  # weights, Adam moments and RNG states
        ta, tb = load_file(a / name), load_file(b / name)
        assert ta.keys() == tb.keys()
        for key in ta:
            assert torch.equal(tb[key], ta[key]), f"{name} {key} differs"


def test_resume_after_a_crash_between_checkpoints(uninterrupted, tmp_path: Path, home: Path) -> None:
    """A run killed after step 29: its log reaches past the newest checkpoint (step 10 here, the later
    ones were never committed) and a half-written checkpoint folder is left over. Resuming must ignore
    and remove the leftover, drop the log lines past step 10, and still reproduce the uninterrupted run."""
    ref_dir, corpus = uninterrupted("transformer")
    cfg = tiny_config(tmp_path, corpus, **RESUME, **KINDS["transformer"])
    run = Path(cfg.train.out_dir)
    shutil.copytree(ref_dir, run)
    for ck in list_checkpoints(run)[1:]:
        shutil.rmtree(ck)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text("".join(ln + "\n" for ln in lines if json.loads(ln)["step"] <= 29))
    leftover = run / "checkpoints" / "step-00000030.tmp-4242"
    shutil.copytree(list_checkpoints(run)[0], leftover)
    _truncate(leftover)
    assert [p.name for p in list_checkpoints(run)] == ["step-00000010"]

    result = fit(cfg, resume=True)
    assert result.step == 30
    assert not leftover.exists()
    ref, got = train_lines(ref_dir), train_lines(run)  # fails on steps 11..29 logged twice
    assert sorted(got) == list(range(1, 31))
    for s in range(1, 31):
        assert got[s]["loss"] == ref[s]["loss"], s
    assert [r["step"] for r in records(run) if "val_loss" in r] == [10, 20, 30]


def test_resume_can_extend_a_finished_run(make_config) -> None:
    cfg = make_config(max_steps=20, eval_interval=10, log_interval=5)
    fit(cfg)
    longer = RunConfig.from_dict({**cfg.to_dict(), "train": {**cfg.to_dict()["train"], "max_steps": 30}})
    result = fit(longer, resume=True)
    assert result.step == 30
    assert sorted(train_lines(Path(cfg.train.out_dir))) == [5, 10, 15, 20, 25, 30]


# --------------------------------------------------------------------------- refusing to clobber
def test_fit_refuses_to_clobber_or_mismatch(make_config, tmp_path: Path) -> None:
    cfg = make_config(max_steps=10, eval_interval=10, log_interval=5)
    fit(cfg)
    out = Path(cfg.train.out_dir)
    before = tree_hashes(out)

    with pytest.raises(GenforgeError, match="resume"):
        fit(cfg)  # would start over and truncate metrics.jsonl
    assert tree_hashes(out) == before

    d = cfg.to_dict()
    changed_model = RunConfig.from_dict({**d, "model": {**d["model"], "n_layer": 3}})
    with pytest.raises(ConfigError, match=r"\[model\]"):
        fit(changed_model, resume=True)
    assert tree_hashes(out) == before

    other = tmp_path / "other.txt"
    other.write_text(make_corpus_text(seed=5), encoding="utf-8")
    changed_data = RunConfig.from_dict({**d, "data": {**d["data"], "corpus": str(other)}})
    with pytest.raises(ConfigError, match=r"\[data\]"):
        fit(changed_data, resume=True)
    assert tree_hashes(out) == before

    empty = RunConfig.from_dict({**d, "train": {**d["train"], "out_dir": str(tmp_path / "nothing")}})
    with pytest.raises(GenforgeError, match="nothing to resume"):
        fit(empty, resume=True)
    assert not (tmp_path / "nothing").exists() or not any((tmp_path / "nothing").rglob("*"))


def test_batch_must_divide_by_grad_accum(make_config) -> None:
    with pytest.raises(ConfigError, match="batch_size=8"):
        fit(make_config(grad_accum=3))


# ------------------------------------------------------------------------------- atomicity
def _tiny_model() -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8))


def _save(path: Path, model: GPT, meta: dict) -> Path:
    return save_checkpoint(path, model_tensors(model), meta)


def test_interrupted_writes_are_ignored_and_pruned(tmp_path: Path) -> None:
    run = tmp_path / "run"
    good = _save(run / "checkpoints" / "step-00000010", _tiny_model(), {"step": 10})
    tmp_left = run / "checkpoints" / "step-00000020.tmp-123"
    shutil.copytree(good, tmp_left)  # complete-looking, but never renamed into place
    (run / "checkpoints" / "step-00000030").mkdir()  # a folder without genforge.json
    (run / "checkpoints" / "notes").mkdir()
    assert list_checkpoints(run) == [good]
    prune_checkpoints(run, keep=5)
    assert not tmp_left.exists()
    assert good.is_dir() and list_checkpoints(run) == [good]
    # pruning keeps the newest `keep` complete checkpoints
    newer = [_save(run / "checkpoints" / f"step-{s:08d}", _tiny_model(), {"step": s}) for s in (40, 50)]
    prune_checkpoints(run, keep=2)
    assert list_checkpoints(run) == newer


def test_save_checkpoint_refuses_nan_and_keeps_the_previous_one(tmp_path: Path) -> None:
    model = _tiny_model()
    path = _save(tmp_path / "ck" / "step-00000001", model, {"step": 1})
    before = tree_hashes(path)
    with torch.no_grad():
        model.transformer.h[0].mlp.c_fc.weight[0, 0] = float("nan")
    with pytest.raises(CheckpointError, match="NaN"):
        _save(path, model, {"step": 2})
    with pytest.raises(CheckpointError, match="mlp.c_fc.weight"):
        _save(tmp_path / "ck" / "step-00000002", model, {"step": 2})
    assert tree_hashes(path) == before
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["step-00000001"]  # no debris
    # replacing a checkpoint of the same name with good weights does replace it, atomically
    with torch.no_grad():
        model.transformer.h[0].mlp.c_fc.weight[0, 0] = 0.5
    _save(path, model, {"step": 3})
    assert read_meta(path)["step"] == 3
    assert load_file(path / "model.safetensors")["transformer.h.0.mlp.c_fc.weight"][0, 0] == 0.5
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["step-00000001"]


# ---------------------------------------------------------------------- checkpoint corruption
def _copy_ckpt(trained: Path, tmp_path: Path, name: str) -> Path:
    dst = tmp_path / name
    shutil.copytree(list_checkpoints(trained)[-1], dst)
    return dst


def _truncate(ck: Path) -> None:
    data = (ck / "model.safetensors").read_bytes()
    (ck / "model.safetensors").write_bytes(data[: len(data) // 2])


def _flip(ck: Path) -> None:
    data = bytearray((ck / "model.safetensors").read_bytes())
    mid = len(data) // 2
    data[mid:mid + 8] = bytes(b ^ 0xFF for b in data[mid:mid + 8])
    (ck / "model.safetensors").write_bytes(bytes(data))


def _truncate_unhashed(ck: Path) -> None:  # e.g. written without recorded hashes: the parser must catch it
    _truncate(ck)
    meta = json.loads((ck / "genforge.json").read_text())
    meta["files"] = {}
    (ck / "genforge.json").write_text(json.dumps(meta))


def _bad_json(ck: Path) -> None:
    (ck / "genforge.json").write_text('{"format": "genforge-checkpoint", "step": ')


def _nan_weights(ck: Path) -> None:
    tensors = load_file(ck / "model.safetensors")
    tensors["transformer.ln_f.weight"][3] = float("nan")
    save_file(tensors, ck / "model.safetensors")
    rehash(ck)


def _missing_weights(ck: Path) -> None:
    (ck / "model.safetensors").unlink()


def _pickle_only(ck: Path) -> None:
    state = {k: v for k, v in load_file(ck / "model.safetensors").items()}
    for p in list(ck.iterdir()):
        p.unlink()
    torch.save(state, ck / "model.pt")


CORRUPTIONS = {
    "truncated": (_truncate, ["model.safetensors"]),
    "flipped": (_flip, ["model.safetensors"]),
    "truncated-unhashed": (_truncate_unhashed, ["model.safetensors"]),
    "invalid-json": (_bad_json, ["genforge.json"]),
    "nan-weights": (_nan_weights, ["model.safetensors", "NaN"]),
    "missing-weights": (_missing_weights, ["model.safetensors", "missing"]),
    "pickle-only": (_pickle_only, ["model.pt", "pickle"]),
}


@pytest.mark.parametrize("case", CORRUPTIONS)
def test_corrupted_checkpoints_are_refused_and_left_alone(case: str, trained: Path, tmp_path: Path) -> None:
    corrupt, words = CORRUPTIONS[case]
    ck = _copy_ckpt(trained, tmp_path, case)
    corrupt(ck)
    before = tree_hashes(ck)
    with pytest.raises(CheckpointError) as info:
        genforge.load(ck)
    msg = str(info.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, (w, msg)
    assert tree_hashes(ck) == before


def test_pickle_file_path_is_refused(trained: Path, tmp_path: Path) -> None:
    state = load_file(list_checkpoints(trained)[-1] / "model.safetensors")
    for suffix in (".pt", ".bin", ".ckpt"):
        f = tmp_path / f"weights{suffix}"
        torch.save(state, f)
        before = f.read_bytes()
        with pytest.raises(CheckpointError, match="pickle"):
            genforge.load(f)
        assert f.read_bytes() == before


# ------------------------------------------------------------------------------ NaN handling
def test_persistently_nonfinite_loss_stops_and_keeps_the_last_good_checkpoint(trained: Path, tmp_path: Path,
                                                                               home: Path) -> None:
    """A diverged model (huge but finite weights, so it loads) gives NaN losses: fit must skip those
    steps, stop after MAX_BAD_STEPS with a one-line error, and write nothing over the last checkpoint."""
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    ck = list_checkpoints(run)[-1]
    tensors = {k: torch.full_like(v, 3e38) for k, v in load_file(ck / "model.safetensors").items()}
    save_file(tensors, ck / "model.safetensors")
    rehash(ck)
    meta = read_meta(ck)
    d = meta["config"]
    d["train"] = {**d["train"], "out_dir": str(run), "max_steps": 80}
    before = tree_hashes(run / "checkpoints")
    with pytest.raises(GenforgeError, match="NaN") as info:
        fit(RunConfig.from_dict(d), resume=True)
    assert "\n" not in str(info.value)
    assert tree_hashes(run / "checkpoints") == before
    recs = records(run)
    assert max(r["step"] for r in recs) == 60  # nothing logged for the skipped steps
    assert all(math.isfinite(v) for r in recs for v in r.values())


# ------------------------------------------------------------------------------ distributed
def test_two_process_ddp_matches_one_process(tmp_path: Path, corpus: Path, home: Path) -> None:
    cfg_file = tmp_path / "ddp.toml"
    cfg_file.write_text(f"""
[model]
kind = "transformer"
n_layer = 2
n_head = 2
n_embd = 32
block_size = 32
[data]
corpus = {json.dumps(str(corpus))}
[train]
max_steps = 12
batch_size = 8
eval_interval = 6
eval_steps = 2
log_interval = 1
warmup_steps = 3
progress = false
device = "cpu"
precision = "fp32"
""")
    one, two = tmp_path / "one", tmp_path / "two"
    from genforge.config import load_toml

    fit(RunConfig.from_dict(load_toml(cfg_file, [f"--train.out_dir={json.dumps(str(one))}"])))
    env = dict(os.environ, GENFORGE_HOME=str(home), OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "genforge", "train", str(cfg_file), f"--train.out_dir={json.dumps(str(two))}"],
        env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]

    a, b = train_lines(one), train_lines(two)  # train_lines fails on a duplicated step
    assert sorted(a) == sorted(b) == list(range(1, 13))
    for s in a:
        assert b[s]["loss"] == pytest.approx(a[s]["loss"], abs=1e-5), s
    evals = [r["step"] for r in records(two) if "val_loss" in r]
    assert evals == [6, 12]  # one line per logged step: rank 1 wrote nothing
    for ra, rb in zip([r for r in records(one) if "val_loss" in r], [r for r in records(two) if "val_loss" in r]):
        assert rb["val_loss"] == pytest.approx(ra["val_loss"], abs=1e-5)
    assert set(tree_hashes(one)) == set(tree_hashes(two))  # the same files, no per-rank duplicates
    ck = list_checkpoints(two)[-1]
    assert read_meta(ck)["trainer"]["world_size"] == 2
    wa, wb = load_file(list_checkpoints(one)[-1] / "model.safetensors"), load_file(ck / "model.safetensors")
    for key in wa:
        torch.testing.assert_close(wb[key], wa[key], atol=1e-4, rtol=0)


def test_fit_logs_the_scheduled_lr(trained: Path) -> None:
    meta = read_meta(list_checkpoints(trained)[-1])
    tc = RunConfig.from_dict(meta["config"]).train
    for s, r in train_lines(trained).items():
        assert r["lr"] == pytest.approx(lr_at(s - 1, tc), rel=1e-12)  # step s ran with lr_at(s - 1)


def test_resuming_with_another_optimizer_is_refused(uninterrupted, tmp_path: Path, home: Path) -> None:
    _, corpus = uninterrupted("transformer")
    cfg = tiny_config(tmp_path, corpus, **RESUME, **KINDS["transformer"])
    fit(cfg, stop_after=10)
    muon = tiny_config(tmp_path, corpus, **RESUME, **KINDS["transformer"], optimizer="muon")
    before = tree_hashes(Path(cfg.train.out_dir))
    with pytest.raises(CheckpointError, match="train.optimizer"):
        fit(muon, resume=True)
    assert tree_hashes(Path(cfg.train.out_dir)) == before  # nothing written, nothing lost
