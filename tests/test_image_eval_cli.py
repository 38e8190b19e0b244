"""`genforge eval` of an image model: FD-FMNIST against the real-data floor, end to end in a subprocess.

The test writes a small stand-in for Fashion-MNIST (the same file format, 10 classes), trains a tiny
diffusion model and a tiny feature net on it, and points genforge at both through its environment
variables; the figures are checked for what they mean (the floor's conditional accuracy is the net's
accuracy on the test images, every figure is in range), not for values.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_diffusion_task import image_folder, recipe
from test_images_data import _idx

from genforge.config import RunConfig
from genforge.data.images import load_images
from genforge.eval.image_features import FeatureNetConfig, save_feature_net, train_feature_net
from genforge.train.fit import fit


def fake_fashion(folder: Path, n_train: int = 200, n_test: int = 50) -> Path:
    """Fashion-MNIST's files, with 28x28 images of 10 easy classes: a bright bar at a class-given row."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        pixels = rng.integers(0, 40, size=(n, 28, 28)).astype(np.uint8)
        for i, c in enumerate(labels):
            pixels[i, 2 + 2 * c: 5 + 2 * c, 4:24] = 230
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(_idx(2051, (n, 28, 28), pixels.tobytes()))
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(_idx(2049, (n,), labels.astype(np.uint8).tobytes()))
    return folder


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("image-eval")
    env = {"GENFORGE_FASHION_MNIST": str(fake_fashion(tmp / "fashion")), "GENFORGE_HOME": str(tmp / "home")}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        tiny = FeatureNetConfig(widths=(4, 8), feature_dim=16)
        net, metrics = train_feature_net(load_images("fashion-mnist", "train"), load_images("fashion-mnist", "test"),
                                         epochs=3, batch_size=32, config=tiny)
        env["GENFORGE_FD_NET"] = str(save_feature_net(net, tmp / "net", metrics))
        base = recipe(tmp, tmp / "unused").to_dict()
        cfg = RunConfig.from_dict({**base, "data": {"corpus": "fashion-mnist"},
                                   "model": {**base["model"], "image_size": 28, "attention_resolutions": [14]},
                                   "train": {**base["train"], "max_steps": 4, "eval_interval": 4}})
        run = fit(cfg).out_dir
        squares = fit(recipe(tmp / "sq", image_folder(tmp / "squares"), max_steps=2)).out_dir
    return env, run, squares, metrics


def cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "genforge", "eval", *args], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=300)


def test_eval_prints_fd_fmnist_beside_the_real_floor(setup):
    env, run, _, metrics = setup
    r = cli(env, "--model", str(run), "--n", "50", "--steps", "2", "--json", str(run / "fd.json"))
    assert r.returncode == 0, r.stderr
    rows = {k: (float(a), float(b))
            for k, a, b in re.findall(r"^\s+(\w+)\s+([-\d.]+)\s+floor\s+([-\d.]+)$", r.stdout, re.M)}
    assert set(rows) == {"fd", "precision", "recall", "conditional_accuracy"}, r.stdout
    for key in ("precision", "recall", "conditional_accuracy"):
        assert all(0 <= v <= 1 for v in rows[key])
    assert rows["fd"][0] >= 0 and rows["fd"][1] >= 0
    assert rows["conditional_accuracy"][1] == pytest.approx(metrics["test_accuracy"], abs=1e-4)  # all 50 test images
    assert "50 samples" in r.stdout and "floor: 50 real test images" in r.stdout
    record = json.loads((run / "fd.json").read_text())
    assert record["ours"]["fd"] == pytest.approx(rows["fd"][0], abs=1e-4) and record["samples"] == 50


def test_eval_refuses_what_it_cannot_measure_in_one_line(setup):
    env, run, squares, _ = setup
    for args, needle in ((["--model", str(squares)], "FD-FMNIST measures 28x28 Fashion-MNIST models"),
                         (["--model", str(run), "--n", "5"], "--n 5 is out of range"),
                         (["--model", str(run), "--steps", "0", "--n", "10"], "steps=0 is out of range"),
                         (["--model", "shakespeare-char"], "--corpus is required for a text model")):
        r = cli(env, *args)
        assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr, r.stderr
