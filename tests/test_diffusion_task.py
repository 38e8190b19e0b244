"""Diffusion training through fit(), loading as an image pipeline, and `genforge generate` for images.

A tiny class-conditional UNet (8x8 images, two classes: light and dark squares made by the test) trains
for a few steps. Properties: resume equals the uninterrupted run bit for bit (weights, optimizer, EMA
and the data generator), the held-out loss falls, each checkpoint carries a sample grid, the loaded
pipeline samples with the EMA weights (an export of the run gives the same images), a seed repeats its
images, and bad settings are one line naming the bound.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import genforge
from genforge.checkpoint import export_model, list_checkpoints
from genforge.config import RunConfig
from genforge.errors import GenforgeError
from genforge.train.fit import fit


def image_folder(root: Path, per_class: int = 24) -> Path:
    """Two classes of 12x12 grey images (resized to 8x8 on load): light squares on dark, and the reverse."""
    rng = np.random.default_rng(0)
    for name, (bg, fg) in {"dark": (200, 30), "light": (30, 220)}.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            a = np.full((12, 12), bg, np.uint8)
            x, y = rng.integers(1, 6, size=2)
            a[y:y + 6, x:x + 6] = fg
            Image.fromarray(a, "L").save(root / name / f"{i:02d}.png")
    return root


def recipe(tmp_path: Path, data: Path, **train) -> RunConfig:
    return RunConfig.from_dict({
        "task": {"kind": "diffusion", "sample_steps": 4, "ema_decay": 0.9},
        "model": {"kind": "unet", "base_channels": 8, "channel_mult": [1, 2], "num_res_blocks": 1,
                  "attention_resolutions": [4], "num_heads": 2, "groups": 4, "image_size": 8, "dropout": 0.0},
        "data": {"corpus": str(data)},
        "train": {"out_dir": str(tmp_path / "run"), "max_steps": 6, "batch_size": 8, "eval_interval": 3,
                  "eval_steps": 2, "log_interval": 3, "warmup_steps": 2, "lr": 2e-3, "min_lr": 2e-4,
                  "progress": False, "precision": "fp32", "device": "cpu", "seed": 7, **train},
    })


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return image_folder(tmp_path_factory.mktemp("images") / "squares")


def test_resume_equals_the_uninterrupted_run(tmp_path: Path, data: Path):
    from safetensors.torch import load_file

    whole = fit(recipe(tmp_path / "a", data))
    fit(recipe(tmp_path / "b", data), stop_after=3)
    resumed = fit(recipe(tmp_path / "b", data), resume=True)
    assert whole.step == resumed.step == 6
    for name in ("model.safetensors", "trainer.safetensors"):  # weights; optimizer, EMA and data generator
        a, b = load_file(str(whole.checkpoint / name)), load_file(str(resumed.checkpoint / name))
        assert a.keys() == b.keys() and any(k.startswith("ema.") for k in a) == (name == "trainer.safetensors")
        for k in a:
            assert torch.equal(a[k], b[k]), (name, k)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, data: Path) -> Path:
    tmp = tmp_path_factory.mktemp("diffusion-run")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENFORGE_HOME", str(tmp / "home"))
        result = fit(recipe(tmp, data, max_steps=60, eval_interval=30, eval_steps=4))
    return result.out_dir


def test_training_lowers_the_held_out_loss_and_saves_a_sample_grid(run: Path):
    import json

    evals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if "val_loss" in line]
    assert len(evals) == 2 and evals[-1]["val_loss"] < evals[0]["val_loss"]
    for ckpt in list_checkpoints(run):
        grid = Image.open(ckpt / "samples.png")
        # 8 samples of each of the 2 classes, 8 to a row, 8x8 tiles 2 pixels apart, shown at 2x
        assert grid.size == (2 * (8 * 8 + 7 * 2), 2 * (2 * 8 + 1 * 2))
    meta = json.loads((list_checkpoints(run)[-1] / "genforge.json").read_text())
    assert meta["pipeline"] == "image" and meta["task"] == "diffusion" and meta["classes"] == ["dark", "light"]


def test_the_pipeline_samples_with_the_ema_weights_and_seeds_repeat(run: Path, tmp_path: Path):
    im = genforge.load(run)
    assert im.modality == "image" and im.classes == ["dark", "light"]
    a = im.generate(n=4, cls="light", steps=5, seed=3)
    assert a.dtype == torch.uint8 and a.shape == (4, 1, 8, 8)
    assert torch.equal(a, im.generate(n=4, cls=1, steps=5, seed=3))
    assert not torch.equal(a, im.generate(n=4, cls=1, steps=5, seed=4))
    exported = genforge.load(export_model(list_checkpoints(run)[-1], tmp_path / "exported", "fp32"))
    assert torch.equal(exported.generate(n=4, cls=1, steps=5, seed=3), a)  # the export holds the EMA weights
    for sampler in ("ddpm", "ddim", "heun", "dpmpp_2m"):
        assert im.generate(n=2, steps=3, sampler=sampler, seed=0).shape == (2, 1, 8, 8)


@pytest.mark.parametrize("kwargs,needle", [
    ({"n": 0}, "n=0 is out of range: allowed an integer 1 .. 256"),
    ({"steps": 1001}, "steps=1001 is out of range"),
    ({"guidance": -1.0}, "guidance=-1.0 is out of range"),
    ({"guidance": float("nan")}, "guidance=nan"),
    ({"sampler": "euler"}, "sampler 'euler' is unknown"),
    ({"cls": 5}, "class 5 is out of range: this model knows 0 .. 1 (0 'dark', 1 'light')"),
    ({"cls": "sneaker"}, "class 'sneaker' is unknown"),
    ({"seed": 2**64}, "seed=18446744073709551616 is invalid"),
])
def test_bad_generation_settings_are_one_line(run: Path, kwargs: dict, needle: str):
    with pytest.raises(GenforgeError) as e:
        genforge.load(run).generate(**{"n": 2, "steps": 2, **kwargs})
    assert needle in str(e.value) and "\n" not in str(e.value)


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "genforge", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120)


def test_cli_writes_pngs_that_record_how_they_were_made(run: Path, tmp_path: Path):
    from genforge.codecs.image import read_png_metadata

    r = cli("generate", "--model", str(run), "--n", "3", "--steps", "4", "--seed", "5", "--class", "dark",
            "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "class 0 (dark)" in r.stdout and "seed 5" in r.stdout
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == ["grid.png", "image-000.png", "image-001.png", "image-002.png"]
    meta = read_png_metadata(tmp_path / "out" / "image-001.png")
    assert meta["seed"] == 5 and meta["steps"] == 4 and meta["sampler"] == "dpmpp_2m" and meta["class"] == "dark"
    assert meta["index"] == 1 and meta["model"] == f"{run.name}/{list_checkpoints(run)[-1].name}"
    pixels = np.asarray(Image.open(tmp_path / "out" / "image-001.png"))
    assert torch.equal(torch.from_numpy(pixels.copy()), genforge.load(run).generate(
        n=3, cls=0, steps=4, seed=5, guidance=2.0)[1, 0])  # the file holds the library's image
    r = cli("generate", "--model", str(run), "--prompt", "Some LIGHT squares", "--n", "2", "--out", "p", cwd=tmp_path)
    assert r.returncode == 0 and "class 1 (light), from the prompt (" in r.stdout, r.stderr
    assert read_png_metadata(tmp_path / "p" / "grid.png")["prompt"] == "Some LIGHT squares"
    r = cli("generate", "--model", str(run), cwd=tmp_path)  # every default: 16 images in samples/
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "samples").glob("image-*.png"))) == 16
    for args, needle in ((["--temperature", "0.5"], "--temperature applies to text models"),
                         (["--class", "9"], "class 9 is out of range"), (["--steps", "0"], "steps=0 is out of range"),
                         (["--prompt", "a purple elephant"], "this model can draw")):
        r = cli("generate", "--model", str(run), "--out", str(tmp_path / "bad"), *args, cwd=tmp_path)
        assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert not (tmp_path / "bad").exists()  # nothing half-written
    r = cli("generate", "--n", "3", cwd=tmp_path)  # an image flag on the bundled text model
    assert r.returncode == 2 and "--n applies to image models" in r.stderr


def test_a_recipe_that_does_not_fit_the_data_is_one_line(tmp_path: Path, data: Path):
    from genforge.errors import ConfigError

    base = recipe(tmp_path, data).to_dict()
    for section, change, needle in (("model", {"num_classes": 5}, "model.num_classes=5 but"),
                                    ("task", {"prediction": "x0"}, "task.prediction='x0' is invalid"),
                                    ("model", {"kind": "transformer"}, "cannot be trained by the diffusion task")):
        cfg = RunConfig.from_dict({**base, section: {**base[section], **change}})
        with pytest.raises(ConfigError, match=needle):
            fit(cfg)


FASHION_META = {"classes": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                            "Ankle boot"]}


@pytest.mark.parametrize("semantic", [True, False], ids=["sentence-embeddings", "words"])
def test_prompts_map_to_the_class_they_ask_for(run: Path, monkeypatch: pytest.MonkeyPatch, semantic: bool):
    from genforge.codecs import sentence
    from genforge.data.images import FASHION_MNIST_DESCRIPTIONS

    if semantic and not sentence.available():
        pytest.skip(f"needs {sentence.PACKAGE}")
    im = genforge.load(run)
    im.classes, im.num_classes = FASHION_META["classes"], 10  # the matching only reads the names
    im.meta = {**im.meta, **FASHION_META, "class_descriptions": FASHION_MNIST_DESCRIPTIONS}
    if not semantic:
        monkeypatch.setattr(sentence, "available", lambda: False)
    asks = {"a pair of sneakers": "Sneaker", "two bags": "Bag", "an ankle boot": "Ankle boot",
            "a t-shirt": "T-shirt/top", "a shirt": "Shirt"}
    if semantic:  # words the class names do not contain
        asks |= {"jeans": "Trouser", "a winter jacket": "Coat", "a handbag": "Bag", "a warm sweater": "Pullover"}
    for prompt, want in asks.items():
        cls, how = im.class_from_prompt(prompt)
        assert im.classes[cls] == want, (prompt, how)
        assert ("similarity" in how) == semantic
    for prompt in ("a purple elephant", "the ocean at night"):
        with pytest.raises(GenforgeError, match="this model can draw"):
            im.class_from_prompt(prompt)
    with pytest.raises(GenforgeError, match="the prompt is empty"):
        im.class_from_prompt("  ?! ")
