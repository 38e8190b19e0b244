"""The real CLI in subprocesses (``python -m genforge ...``) with a private GENFORGE_HOME.

Each subprocess pays the torch import (~2 s), so independent commands run concurrently in
module-scoped fixtures and the tests assert on their results.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from conftest import make_corpus_text
from safetensors.torch import load_file

import genforge
from genforge.checkpoint import list_checkpoints
from genforge.store import BUNDLED

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "tiny-test.toml"
WORKERS = max(2, min(4, os.cpu_count() or 2))
PROMPT = "ROMEO:"


class Env:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "home"
        self.corpus = root / "corpus.txt"
        self.run = root / "run"
        self.env = dict(os.environ, GENFORGE_HOME=str(self.home), OMP_NUM_THREADS="1")
        self.env.pop("WORLD_SIZE", None)
        self.env.pop("RANK", None)

    def cli(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "genforge", *map(str, args)], env=self.env, cwd=self.root,
                              capture_output=True, text=True, encoding="utf-8", timeout=timeout)

    def train_args(self, *extra: str, out_dir: Path | None = None) -> list[str]:
        return ["train", str(CONFIG), f"--data.corpus={self.corpus}", f"--train.out_dir={out_dir or self.run}",
                "--train.max_steps=20", "--train.eval_interval=10", "--train.eval_steps=2",
                "--train.log_interval=10", "--train.progress=false", *extra]


def tree_hashes(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def run_all(env: Env, commands: dict[str, list[str]]) -> dict[str, subprocess.CompletedProcess]:
    with ThreadPoolExecutor(WORKERS) as pool:
        futures = {k: pool.submit(env.cli, *args) for k, args in commands.items()}
        return {k: f.result() for k, f in futures.items()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Env, subprocess.CompletedProcess]:
    env = Env(tmp_path_factory.mktemp("cli"))
    env.corpus.write_text(make_corpus_text(), encoding="utf-8")
    proc = env.cli(*env.train_args())
    return env, proc


def test_train_writes_a_run(trained) -> None:
    env, proc = trained
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "done: step 20" in proc.stdout
    ckpts = list_checkpoints(env.run)
    assert [p.name for p in ckpts] == ["step-00000010", "step-00000020"]
    assert str(ckpts[-1]) in proc.stdout
    steps = [json.loads(ln)["step"] for ln in (env.run / "metrics.jsonl").read_text().splitlines()
             if "loss" in json.loads(ln)]
    assert steps == [10, 20]  # the overrides were applied
    assert (env.run / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert (env.home / "data" / "shards").is_dir()  # caches went to GENFORGE_HOME
    assert not (env.root / "runs").exists()  # the config's own out_dir was overridden


@pytest.fixture(scope="module")
def generated(trained) -> dict[str, subprocess.CompletedProcess]:
    env, proc = trained
    assert proc.returncode == 0, proc.stderr
    store = env.home / "models" / "tiny-store"
    shutil.copytree(list_checkpoints(env.run)[-1], store)
    gen = ["generate", "--model", str(env.run), "--prompt", PROMPT, "--max-tokens", "20"]
    return run_all(env, {
        "seed1": gen + ["--seed", "1", "--temperature", "0.8"],
        "seed1-again": gen + ["--seed", "1", "--temperature", "0.8"],
        "greedy": gen + ["--temperature", "0"],
        "greedy-beams1": gen + ["--num-beams", "1", "--temperature", "0"],
        "models": ["models"],
    })


def _text(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout.endswith("\n")
    return proc.stdout[:-1]


def test_generate_prints_prompt_then_continuation_and_is_seeded(trained, generated) -> None:
    env, _ = trained
    out = _text(generated["seed1"])
    assert out.startswith(PROMPT)
    assert len(out) == len(PROMPT) + 20  # char codec: 20 tokens are 20 characters
    assert _text(generated["seed1-again"]) == out
    # the CLI's streamed text equals the library's generate() for the same request
    tm = genforge.load(env.run)
    assert out[len(PROMPT):] == tm.generate(PROMPT, max_tokens=20, seed=1, temperature=0.8)


def test_greedy_is_the_same_through_every_path(trained, generated) -> None:
    env, _ = trained
    greedy = _text(generated["greedy"])
    assert _text(generated["greedy-beams1"]) == greedy
    tm = genforge.load(env.run)
    assert greedy == PROMPT + tm.generate(PROMPT, max_tokens=20, temperature=0)


def test_models_lists_store_and_bundled_models(trained, generated) -> None:
    proc = generated["models"]
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines()[1:] if line.strip()}
    assert "tiny-store" in rows
    assert rows["tiny-store"][1:3] == ["local", "transformer"]
    env, _ = trained
    assert str(env.home / "models" / "tiny-store") in proc.stdout
    bundled = {d.name for d in BUNDLED.iterdir() if (d / "genforge.json").is_file()} if BUNDLED.is_dir() else set()
    assert bundled <= set(rows)
    assert {n for n, r in rows.items() if r[1] == "bundled"} == bundled


BUNDLED_NAMES = sorted(d.name for d in BUNDLED.iterdir() if (d / "genforge.json").is_file()) \
    if BUNDLED.is_dir() else []


@pytest.mark.parametrize("name", BUNDLED_NAMES)
def test_bundled_model_loads_by_name_and_generates(name: str, home: Path) -> None:
    before = tree_hashes(BUNDLED / name)
    tm = genforge.load(name)  # hashes verified on load; an empty GENFORGE_HOME is enough
    assert tm.path == BUNDLED / name
    if tm.modality == "molecule":  # SMILES from a fragment, reproducible by seed
        mols = tm.sample(4, prompt="c1ccccc1", seed=7, max_tokens=24)
        assert mols == tm.sample(4, prompt="c1ccccc1", seed=7, max_tokens=24)
        assert all(m.startswith("c1ccccc1") and "\n" not in m for m in mols)
    elif tm.modality == "music":  # a short piece under the conditions asked for, reproducible by seed
        d = tm.compose(1, key="G major", seconds=5, seed=7)[0]
        assert d.piece.notes.tolist() == tm.compose(1, key="G major", seconds=5, seed=7)[0].piece.notes.tolist()
        assert d.piece.key == "G major" and len(d.piece.notes) > 0
    elif tm.modality == "speech":  # a word as audio, reproducible by seed
        images, audio = tm.speak("seven", n=1, seed=7, steps=4)
        again, _ = tm.speak("seven", n=1, seed=7, steps=4)
        assert (images == again).all() and len(audio[0]) > 0.3 * 22_050
    else:
        prompt = tm.codec.decode(tm.codec.encode("The "))
        a = tm.generate(prompt, max_tokens=24, seed=7)
        assert a == tm.generate(prompt, max_tokens=24, seed=7)
        assert tm.codec.decode(tm.codec.encode(a)) == a
        greedy = tm.complete(prompt, max_tokens=24, temperature=0)
        assert greedy.finish_reason == "length" and len(greedy.token_ids) == 24
    assert tree_hashes(BUNDLED / name) == before  # loading never writes into the package
    assert not home.exists() or not any(p.is_file() for p in home.rglob("*"))


# ---------------------------------------------------------------------------------- bad input
def _bad_cases(env: Env) -> dict[str, tuple[list[str], list[str]]]:
    """name -> (argv, substrings the one-line error must contain)."""
    root = env.root
    return {
        "unknown-key": (env.train_args("--train.lrr=1", out_dir=root / "out-unknown-key"),
                        ["train.lrr", "allowed keys", "lr", "max_steps", "warmup_steps"]),
        "wrong-type": (env.train_args("--train.lr=abc", out_dir=root / "out-wrong-type"),
                       ["train.lr", "abc", "float"]),
        "missing-config": (["train", str(root / "nope.toml"), f"--train.out_dir={root / 'out-missing-config'}"],
                           ["nope.toml", "not found"]),
        "empty-corpus": (env.train_args(f"--data.corpus={root / 'empty.txt'}", out_dir=root / "out-empty"),
                         ["empty.txt", "empty"]),
        "missing-corpus": (env.train_args(f"--data.corpus={root / 'missing.txt'}", out_dir=root / "out-missing"),
                           ["missing.txt", "does not exist"]),
        "clobber": (env.train_args(), ["already holds checkpoints", "--resume"]),
        "char-outside-vocab": (["generate", "--model", str(env.run), "--prompt", "ab€", "--max-tokens", "5"],
                               ["'€'", "position 2", "vocabulary"]),
        "zero-max-tokens": (["generate", "--model", str(env.run), "--prompt", PROMPT, "--max-tokens", "0"],
                            ["max_tokens=0", "allowed"]),
        "truncated-checkpoint": (["generate", "--model", str(root / "broken" / "truncated"), "--prompt", "a"],
                                 ["model.safetensors", "truncated"]),
        "pickle-only": (["generate", "--model", str(root / "broken" / "pickled"), "--prompt", "a"],
                        ["model.pt", "pickle"]),
        "pickle-file": (["generate", "--model", str(root / "broken" / "pickled" / "model.pt"), "--prompt", "a"],
                        ["model.pt", "pickle"]),
        "missing-model": (["generate", "--model", "no-such-model", "--prompt", "a"],
                          ["no-such-model", "tiny-store"]),
        "eval-missing-corpus": (["eval", "--model", str(env.run), "--corpus", str(root / "missing.txt")],
                                ["missing.txt"]),
    }


def _prepare_broken(env: Env) -> Path:
    broken = env.root / "broken"
    if broken.exists():
        return broken
    (env.root / "empty.txt").write_text("", encoding="utf-8")
    newest = list_checkpoints(env.run)[-1]
    shutil.copytree(newest, broken / "truncated")
    data = (broken / "truncated" / "model.safetensors").read_bytes()
    (broken / "truncated" / "model.safetensors").write_bytes(data[: len(data) // 2])
    (broken / "pickled").mkdir(parents=True)
    torch.save(load_file(newest / "model.safetensors"), broken / "pickled" / "model.pt")
    return broken


def _run_bad(env: Env, names: list[str]):
    broken = _prepare_broken(env)
    watched = {"run": env.run, "broken": broken, "store": env.home / "models"}
    before = {k: tree_hashes(p) for k, p in watched.items()}
    cases = {k: v for k, v in _bad_cases(env).items() if k in names}
    assert set(cases) == set(names)
    results = run_all(env, {name: argv for name, (argv, _) in cases.items()})
    after = {k: tree_hashes(p) for k, p in watched.items()}
    return cases, results, before, after


# the cases the spec names run by default; a few more in the slow pass (each costs a torch import)
BAD = ["unknown-key", "wrong-type", "missing-config", "empty-corpus", "missing-corpus",
       "char-outside-vocab", "zero-max-tokens", "truncated-checkpoint", "pickle-only"]
BAD_EXTRA = ["clobber", "pickle-file", "missing-model", "eval-missing-corpus"]


@pytest.fixture(scope="module")
def bad_runs(trained, generated):
    return _run_bad(trained[0], BAD)


@pytest.fixture(scope="module")
def bad_runs_extra(trained, generated):
    return _run_bad(trained[0], BAD_EXTRA)


def _check_bad(case: str, runs) -> None:
    cases, results, _, _ = runs
    proc = results[case]
    words = cases[case][1]
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("genforge: error:")
    for w in words:
        assert w in lines[0], (w, lines[0])


def _check_unchanged(env: Env, runs) -> None:
    _, _, before, after = runs
    for name in before:
        assert after[name] == before[name], name
    assert before["run"] and before["broken"] and before["store"]
    # failed trainings leave no files behind in the folders they were pointed at
    for out in env.root.glob("out-*"):
        assert not [p for p in out.rglob("*") if p.is_file()], out


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_exit_2(case: str, bad_runs) -> None:
    _check_bad(case, bad_runs)


def test_bad_input_changes_no_existing_file(trained, bad_runs) -> None:
    _check_unchanged(trained[0], bad_runs)


@pytest.mark.slow
@pytest.mark.parametrize("case", BAD_EXTRA)
def test_more_bad_input_is_one_line_exit_2(case: str, trained, bad_runs_extra) -> None:
    _check_bad(case, bad_runs_extra)
    _check_unchanged(trained[0], bad_runs_extra)


@pytest.mark.slow
def test_sampling_seed_no_stream_and_store_name_paths(trained, generated) -> None:
    env, proc = trained
    assert proc.returncode == 0, proc.stderr
    gen = ["generate", "--model", str(env.run), "--prompt", PROMPT, "--max-tokens", "20"]
    res = run_all(env, {"seed2": gen + ["--seed", "2", "--top-k", "5", "--temperature", "0.8"],
                        "greedy-no-stream": gen + ["--temperature", "0", "--no-stream"],
                        "by-name": ["generate", "--model", "tiny-store", "--prompt", PROMPT, "--max-tokens", "20",
                                    "--seed", "1", "--temperature", "0.8"]})
    # a model in the store is found by name and is the same model as the run it came from
    assert _text(res["by-name"]) == _text(generated["seed1"])
    tm = genforge.load(env.run)
    assert _text(res["seed2"]) == PROMPT + tm.generate(PROMPT, max_tokens=20, seed=2, temperature=0.8, top_k=5)
    assert _text(res["greedy-no-stream"]) == PROMPT + tm.generate(PROMPT, max_tokens=20, temperature=0)


# ------------------------------------------------------------------------------ success paths
@pytest.fixture(scope="module")
def more_verbs(trained) -> dict[str, subprocess.CompletedProcess]:
    """export (fp32 and the default fp16), eval and int8 generation side by side with a 30-step run;
    then that run, cut back to its step-20 checkpoint as a crash would leave it, is resumed."""
    env, proc = trained
    assert proc.returncode == 0, proc.stderr
    straight, resumed = env.root / "run-straight", env.root / "run-resumed"
    done = run_all(env, {
        "export32": ["export", str(env.run), str(env.root / "exported32"), "--dtype", "fp32"],
        "export16": ["export", str(env.run), str(env.root / "exported16")],
        "eval": ["eval", "--model", str(env.run), "--corpus", str(env.corpus)],
        "int8": ["generate", "--model", str(env.run), "--prompt", PROMPT, "--max-tokens", "20", "--temperature", "0",
                 "--quantize", "int8"],
        "straight": env.train_args("--train.max_steps=30", out_dir=straight),
        "past-context": ["generate", "--model", str(env.run), "--prompt", PROMPT, "--max-tokens", "90",
                         "--temperature", "0"],
        "out": ["generate", "--model", str(env.run), "--prompt", PROMPT, "--max-tokens", "20", "--temperature", "0",
                "--out", str(env.root / "generated" / "text.txt")],
    })
    assert done["straight"].returncode == 0, done["straight"].stderr
    shutil.copytree(straight, resumed)
    shutil.rmtree(resumed / "checkpoints" / "step-00000030")
    lines = (resumed / "metrics.jsonl").read_text().splitlines()
    (resumed / "metrics.jsonl").write_text("".join(ln + "\n" for ln in lines if json.loads(ln)["step"] <= 20))
    done["resume"] = env.cli(*env.train_args("--train.max_steps=30", "--resume", out_dir=resumed))
    return done


def test_export_writes_a_model_that_generates_like_its_run(trained, more_verbs) -> None:
    env, _ = trained
    for name in ("export32", "export16"):
        assert more_verbs[name].returncode == 0, more_verbs[name].stderr
        assert more_verbs[name].stdout.startswith("exported ")
    out32, out16 = env.root / "exported32", env.root / "exported16"
    # no optimizer; a model card written from the run's own record
    assert sorted(p.name for p in out32.iterdir()) == ["MODEL_CARD.md", "genforge.json", "model.safetensors"]
    card, meta = (out32 / "MODEL_CARD.md").read_text(), json.loads((out32 / "genforge.json").read_text())
    assert card.startswith("# exported32\n")
    assert f"val_loss {meta['metrics']['val_loss']:.4g}" in card and f"{meta['parameters']:,}" in card
    for section in ("## Watermark", "## Bias", "## Limits"):
        assert section in card
    newest = list_checkpoints(env.run)[-1]
    assert (newest / "MODEL_CARD.md").read_text().startswith(f"# {env.run.name}\n")  # every checkpoint has its card
    w, w32, w16 = (load_file(p / "model.safetensors") for p in (newest, out32, out16))
    assert w.keys() == w32.keys() == w16.keys()
    for k in w:
        assert torch.equal(w32[k], w[k]) and torch.equal(w16[k], w[k].half()), k
    greedy = genforge.load(env.run).generate(PROMPT, max_tokens=20, temperature=0)
    assert genforge.load(out32).generate(PROMPT, max_tokens=20, temperature=0) == greedy


def test_eval_prints_the_perplexity_the_library_computes(trained, more_verbs) -> None:
    env, _ = trained
    proc = more_verbs["eval"]
    assert proc.returncode == 0, proc.stderr
    ppl = genforge.load(env.run).perplexity(env.corpus.read_text(encoding="utf-8"))
    assert proc.stdout.split()[:2] == ["perplexity", f"{ppl:.4f}"]
    assert 1 < ppl < genforge.load(env.run).codec.vocab_size


def test_quantize_int8_generates_what_the_int8_library_model_does(trained, more_verbs) -> None:
    env, _ = trained
    expected = genforge.load(env.run, quantize="int8").generate(PROMPT, max_tokens=20, temperature=0)
    assert _text(more_verbs["int8"]) == PROMPT + expected


def test_resume_from_the_cli_continues_the_run_exactly(trained, more_verbs) -> None:
    env, _ = trained
    for name in ("resume", "straight"):
        assert more_verbs[name].returncode == 0, more_verbs[name].stderr
        assert "done: step 30" in more_verbs[name].stdout
    resumed, straight = env.root / "run-resumed", env.root / "run-straight"
    assert [p.name for p in list_checkpoints(resumed)] == ["step-00000020", "step-00000030"]
    assert max(json.loads(ln)["step"] for ln in (resumed / "metrics.jsonl").read_text().splitlines()) == 30

    def losses(run: Path) -> dict[int, float]:
        return {r["step"]: r.get("loss", r.get("val_loss")) for r in map(json.loads,
                (run / "metrics.jsonl").read_text().splitlines())}

    assert losses(resumed) == losses(straight)  # bit for bit: same process count, threads and machine


def test_generate_out_writes_the_text_to_a_file(trained, more_verbs) -> None:
    env, _ = trained
    proc = more_verbs["out"]
    assert proc.returncode == 0, proc.stderr
    path = env.root / "generated" / "text.txt"
    assert proc.stdout.startswith(f"wrote {path}")
    greedy = genforge.load(env.run).generate(PROMPT, max_tokens=20, temperature=0)
    assert path.read_text(encoding="utf-8") == PROMPT + greedy + "\n"


def test_generate_writes_past_the_context_by_sliding_the_window(trained, more_verbs) -> None:
    env, _ = trained
    ctx = json.loads((list_checkpoints(env.run)[-1] / "genforge.json").read_text())["model"]["block_size"]
    assert 90 + len(PROMPT) > 2 * ctx  # the window slides more than once
    out = _text(more_verbs["past-context"])
    assert len(out) == len(PROMPT) + 90  # char codec: 90 new characters
    assert out == PROMPT + genforge.load(env.run).generate(PROMPT, max_tokens=90, temperature=0)
