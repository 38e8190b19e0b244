"""FD-FMNIST: the Fréchet distance against closed forms and scipy, k-NN precision/recall on constructed
clusters, conditional accuracy, and the feature net (shapes, training, save/load, corrupt files).

The default tests train only a tiny net on synthetic squares (seconds); the real Fashion-MNIST feature
net is trained by the slow test.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from genforge.data.images import FASHION_MNIST_DIR, ImageSet
from genforge.errors import CheckpointError, GenforgeError
from genforge.eval.image_features import (
    FeatureNet,
    FeatureNetConfig,
    embed_images,
    load_feature_net,
    save_feature_net,
    train_feature_net,
)
from genforge.eval.image_metrics import (
    conditional_accuracy,
    evaluate_images,
    feature_stats,
    frechet_distance,
    precision_recall,
    real_floor,
)

TINY = FeatureNetConfig(image_size=12, channels=1, widths=(4, 8), feature_dim=16, num_classes=2, dropout=0.1)


def squares(n: int, seed: int, source: str) -> ImageSet:
    """Class 1: a light 4x4 square, class 0: a dark one, anywhere on a noisy mid-grey 12x12 image."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(90, 160, (n, 1, 12, 12), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 2, (n,), generator=g)
    corners = torch.randint(0, 9, (n, 2), generator=g)
    for i in range(n):
        r, c = corners[i].tolist()
        images[i, 0, r:r + 4, c:c + 4] = 230 if labels[i] else 20
    return ImageSet(images=images, labels=labels, classes=["dark", "light"], source=source)


@pytest.fixture(scope="module")
def trained() -> tuple[FeatureNet, dict, ImageSet, ImageSet]:
    train, test = squares(512, 0, "squares train"), squares(200, 1, "squares test")
    net, metrics = train_feature_net(train, test, epochs=3, batch_size=32, lr=1e-2, seed=0, config=TINY)
    return net, metrics, train, test


def gaussian(n: int, d: int, seed: int, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) / math.sqrt(d) + shift


# --- Fréchet distance ---------------------------------------------------------------------------

def test_fd_is_zero_for_identical_statistics() -> None:
    mu, sigma = feature_stats(gaussian(500, 16, 0))
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-8 * np.trace(sigma))


def test_fd_of_diagonal_gaussians_matches_the_closed_form() -> None:
    mu1, mu2 = np.array([0.0, 1.0, -2.0, 3.0]), np.array([1.0, 1.0, 0.5, -1.0])
    a, b = np.array([1.0, 4.0, 0.25, 9.0]), np.array([2.0, 1.0, 1.0, 0.0])  # b has a zero variance: singular
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-12)
    assert frechet_distance(torch.tensor(mu1), torch.tensor(np.diag(a)), mu2, np.diag(b)) == pytest.approx(expected)


def test_fd_is_symmetric_and_positive() -> None:
    s1, s2 = feature_stats(gaussian(300, 12, 1)), feature_stats(gaussian(300, 12, 2, shift=0.3))
    forward, backward = frechet_distance(*s1, *s2), frechet_distance(*s2, *s1)
    assert forward > 0 and forward == pytest.approx(backward, rel=1e-10)


def test_fd_matches_scipy_sqrtm_on_random_psd_matrices() -> None:
    linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(3)
    for d in (2, 10, 64):
        x, y = rng.normal(size=(d, d + 5)), rng.normal(size=(d, d + 5))
        s1, s2 = x @ x.T / d, y @ y.T / d
        mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
        covmean = linalg.sqrtm(s1 @ s2)
        reference = (mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(np.real(covmean))
        assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(reference, rel=1e-8)


def test_fd_is_invariant_to_a_rotation_of_both_feature_sets() -> None:
    x, y = gaussian(400, 8, 4), gaussian(400, 8, 5, shift=0.5)
    q, _ = np.linalg.qr(np.random.default_rng(6).normal(size=(8, 8)))
    plain = frechet_distance(*feature_stats(x), *feature_stats(y))
    assert frechet_distance(*feature_stats(x @ q), *feature_stats(y @ q)) == pytest.approx(plain, rel=1e-9)


def test_fd_of_fewer_samples_than_dimensions_is_finite() -> None:
    x = gaussian(10, 32, 7)  # covariance of rank 9 in 32 dimensions
    mu, sigma = feature_stats(x)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-8 * np.trace(sigma))
    assert math.isfinite(frechet_distance(mu, sigma, *feature_stats(gaussian(10, 32, 8))))


def test_fd_refuses_mismatched_or_non_finite_inputs() -> None:
    mu, sigma = np.zeros(3), np.eye(3)
    with pytest.raises(ValueError, match="one d"):
        frechet_distance(mu, sigma, np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(mu, sigma, np.array([0.0, np.nan, 0.0]), sigma)
    with pytest.raises(ValueError, match="at least 2"):
        feature_stats(np.zeros((1, 3)))


# --- precision and recall -----------------------------------------------------------------------

def brute_force_pr(real: np.ndarray, fake: np.ndarray, k: int) -> tuple[float, float]:
    """The definition, unbatched, in float64: radius = distance to the k-th nearest other point."""
    def dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))

    r_real = np.sort(dists(real, real), axis=1)[:, k]
    r_fake = np.sort(dists(fake, fake), axis=1)[:, k]
    precision = (dists(fake, real) <= r_real[None, :]).any(1).mean()
    recall = (dists(real, fake) <= r_fake[None, :]).any(1).mean()
    return float(precision), float(recall)


def test_identical_sets_have_precision_and_recall_one() -> None:
    x = gaussian(300, 8, 10)
    assert precision_recall(x, x.copy()) == (1.0, 1.0)


def test_a_fake_set_far_from_the_real_one_has_precision_zero() -> None:
    assert precision_recall(gaussian(200, 8, 11), gaussian(200, 8, 12, shift=100.0)) == (0.0, 0.0)


def test_fakes_covering_one_of_two_clusters_have_full_precision_and_half_recall() -> None:
    rng = np.random.default_rng(13)
    a, b = np.zeros(4), np.full(4, 50.0)
    real = np.concatenate([rng.normal(size=(300, 4)) + a, rng.normal(size=(300, 4)) + b])
    fake = rng.normal(size=(300, 4)) + a
    precision, recall = precision_recall(real, fake, k=3)
    assert precision >= 0.9  # not 1: a few fakes of the tails fall outside the 3-NN balls of 300 reals
    assert 0.45 <= recall <= 0.5  # cluster b is not covered at all


def test_batched_precision_recall_agrees_with_the_definition() -> None:
    real, fake = gaussian(150, 6, 14), gaussian(120, 6, 15, shift=0.4)
    expected = brute_force_pr(real, fake, 3)
    assert 0 < expected[0] < 1 and 0 < expected[1] < 1
    for batch in (None, 7, 1000):
        assert precision_recall(torch.tensor(real), fake, k=3, batch_size=batch) == pytest.approx(expected)
    assert precision_recall(real, fake, k=5) == pytest.approx(brute_force_pr(real, fake, 5))


def test_precision_recall_refuses_bad_inputs() -> None:
    with pytest.raises(ValueError, match="width"):
        precision_recall(np.zeros((10, 3)), np.zeros((10, 4)))
    with pytest.raises(ValueError, match="more than 3"):
        precision_recall(np.zeros((3, 2)), np.zeros((10, 2)))


# --- conditional accuracy -----------------------------------------------------------------------

def test_conditional_accuracy_of_predictions_and_logits() -> None:
    assert conditional_accuracy(torch.tensor([0, 1, 2, 2]), torch.tensor([0, 1, 1, 2])) == 0.75
    logits = torch.tensor([[5.0, 0.0, 0.0], [0.0, 0.0, 3.0], [0.0, 2.0, 1.0]])
    assert conditional_accuracy(logits, [0, 1, 1]) == pytest.approx(2 / 3)
    assert conditional_accuracy(np.array([3, 3]), np.array([3, 3])) == 1.0
    with pytest.raises(ValueError, match="requested_labels"):
        conditional_accuracy(torch.tensor([0, 1]), torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match="integer predictions"):
        conditional_accuracy(torch.tensor([0.0, 1.0]), torch.tensor([0, 1]))


# --- the feature net ----------------------------------------------------------------------------

def test_feature_net_shapes() -> None:
    net = FeatureNet().eval()
    x = torch.rand(5, 1, 28, 28) * 2 - 1
    assert net.features(x).shape == (5, 128) and net(x).shape == (5, 10)
    feats, logits = embed_images(net, (x * 127.5 + 127.5).round().to(torch.uint8), batch_size=2)
    assert feats.shape == (5, 128) and logits.shape == (5, 10)
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        net.features(torch.zeros(2, 3, 28, 28))


def test_training_reaches_high_accuracy_and_is_seed_deterministic(trained) -> None:
    net, metrics, train, test = trained
    assert metrics["test_accuracy"] >= 0.95, metrics
    assert metrics["steps"] == 3 * 16 and metrics["train_data"] == "squares train"
    state = torch.get_rng_state()
    again, _ = train_feature_net(train, test, epochs=3, batch_size=32, lr=1e-2, seed=0, config=TINY)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's RNG is left alone
    assert again.fingerprint() == net.fingerprint()
    other, _ = train_feature_net(train, test, epochs=1, batch_size=32, lr=1e-2, seed=1, config=TINY)
    assert other.fingerprint() != net.fingerprint()


def test_training_refuses_mismatched_data() -> None:
    train = squares(20, 0, "a")
    with pytest.raises(GenforgeError, match="2 classes"):
        train_feature_net(train, train, epochs=1, config=FeatureNetConfig(image_size=12, widths=(4,)))


def test_save_load_round_trip_gives_identical_outputs(trained, tmp_path: Path) -> None:
    net, metrics, _, test = trained
    folder = save_feature_net(net, tmp_path / "net", metrics)
    meta = json.loads((folder / "genforge.json").read_text())
    assert meta["model"] == {"kind": "feature-net", "image_size": 12, "channels": 1, "widths": [4, 8],
                             "feature_dim": 16, "num_classes": 2, "dropout": 0.1}
    assert meta["metrics"]["test_accuracy"] == metrics["test_accuracy"]
    assert meta["data"]["train_data"] == "squares train" and meta["data"]["classes"] == ["dark", "light"]
    assert meta["training"]["seed"] == 0 and meta["fingerprint"] == net.fingerprint()
    loaded = load_feature_net(folder)
    x = test.to_model_range()[:50]
    with torch.no_grad():
        assert torch.equal(loaded.features(x), net.features(x)) and torch.equal(loaded(x), net(x))
    assert loaded.fingerprint() == net.fingerprint()


def one_line(folder: Path, *needles: str) -> str:
    with pytest.raises(CheckpointError) as info:
        load_feature_net(folder)
    msg = str(info.value)
    assert "\n" not in msg and all(n in msg for n in needles), msg
    return msg


def test_a_corrupted_weights_file_is_refused_in_one_line(trained, tmp_path: Path) -> None:
    net, metrics, _, _ = trained
    folder = save_feature_net(net, tmp_path / "net", metrics)
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    one_line(folder, "model.safetensors", "corrupted")


def test_a_config_that_does_not_fit_the_weights_is_refused_in_one_line(trained, tmp_path: Path) -> None:
    net, metrics, _, _ = trained
    folder = save_feature_net(net, tmp_path / "net", metrics)
    meta_file = folder / "genforge.json"
    meta = json.loads(meta_file.read_text())
    for change, needles in (({"widths": [4, 16]}, ("do not belong together",)),
                            ({"feature_dim": 10 ** 9}, ("corrupted", "feature_dim")),
                            ({"kind": "unet"}, ("not a feature net",))):
        meta_file.write_text(json.dumps(dict(meta, model=dict(meta["model"], **change))))
        one_line(folder, *needles)
    with pytest.raises(GenforgeError, match="test_accuracy"):
        save_feature_net(net, tmp_path / "untested", {"train_loss": 0.1})


# --- evaluating images --------------------------------------------------------------------------

def test_real_images_against_themselves_score_perfectly(trained) -> None:
    net, metrics, _, test = trained
    out = evaluate_images(test.images, test.labels, test, net, batch_size=64)
    assert out["fd"] == pytest.approx(0.0, abs=1e-6)
    assert (out["precision"], out["recall"]) == (1.0, 1.0)
    assert out["conditional_accuracy"] == pytest.approx(metrics["test_accuracy"])
    assert out["n"] == out["n_real"] == 200 and out["feature_net"] == net.fingerprint()
    assert "conditional_accuracy" not in evaluate_images(test.images, None, test, net)


def test_the_real_floor_and_a_bad_generator(trained) -> None:
    net, _, train, test = trained
    floor = real_floor(train, test, net, n=100, train_n=300)
    assert floor["n"] == 100 and floor["n_real"] == 300 and floor["fake"] == "squares test"
    assert floor["conditional_accuracy"] >= 0.9 and floor["precision"] > 0.5 and floor["recall"] > 0.5
    blank = torch.full((100, 1, 12, 12), 128, dtype=torch.uint8)  # a generator that draws only grey
    bad = evaluate_images(blank, torch.ones(100, dtype=torch.long), train, net)
    assert bad["fd"] > 10 * floor["fd"] and bad["recall"] < 0.05


def test_images_of_the_wrong_shape_are_one_line(trained) -> None:
    net, _, train, _ = trained
    with pytest.raises(GenforgeError, match=r"uint8 images \(N, 1, 12, 12\)") as info:
        evaluate_images(torch.zeros(10, 1, 28, 28, dtype=torch.uint8), None, train, net)
    assert "\n" not in str(info.value)
    with pytest.raises(GenforgeError, match="fake_labels"):
        evaluate_images(train.images[:10], torch.zeros(9, dtype=torch.long), train, net)


def test_importing_the_package_is_cheap() -> None:
    code = "import sys, genforge.eval; assert 'torch' not in sys.modules and 'numpy' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# --- the real thing -----------------------------------------------------------------------------

@pytest.mark.slow
def test_the_fashion_mnist_feature_net_reaches_90_percent(tmp_path: Path) -> None:
    if not (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"Fashion-MNIST is not installed in {FASHION_MNIST_DIR}")
    from genforge.data.images import load_images

    start = time.perf_counter()
    net, metrics = train_feature_net(load_images("fashion-mnist", "train"), load_images("fashion-mnist", "test"))
    print(f"feature net: test accuracy {metrics['test_accuracy']:.4f} in {time.perf_counter() - start:.0f} s")
    assert metrics["test_accuracy"] >= 0.90, metrics
    assert load_feature_net(save_feature_net(net, tmp_path / "net", metrics)).fingerprint() == net.fingerprint()
