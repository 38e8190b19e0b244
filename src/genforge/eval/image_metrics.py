"""FD-FMNIST: how close generated images are to real ones, in the feature space of ``image_features``.

- Fréchet distance (Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule Converge to a Local
  Nash Equilibrium"): both feature sets as Gaussians, ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2}).
  One number for fidelity and diversity together; lower is better, 0 for identical statistics.
- Precision and recall (Kynkäänniemi et al. 2019, "Improved Precision and Recall Metric for Assessing
  Generative Models"): each set's manifold is the union of balls around its points reaching the k-th
  nearest neighbour; precision is the share of fakes inside the real manifold (fidelity), recall the
  share of reals inside the fake manifold (diversity: a generator that draws only trousers has recall ~0.1).
- Conditional accuracy: the share of images the feature net classifies as the class they were asked for.

All three depend on the sample sizes (FD is biased upwards for small n, Chong & Forsyth 2020; k-NN radii
shrink as a set grows), so a generator is only compared with a floor (``real_floor``: real test images
against the training set) measured with the same n, the same real set and the same feature net.
The functions on feature arrays are pure; ``evaluate_images`` and ``real_floor`` embed images first.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..data.images import ImageSet
from ..errors import GenforgeError
from .image_features import FeatureNet, embed_images

BLOCK_ELEMENTS = 1 << 25  # distances per block of precision_recall (128 MiB of float32): 10k x 60k fits anywhere


def _matrix(x: Any, name: str) -> np.ndarray:
    a = x.detach().cpu().double().numpy() if isinstance(x, Tensor) else np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-d array (n, d), got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} has NaN or infinite values")
    return a


def _row(v: Any) -> Any:
    """A mean vector (d,) as one row (1, d), so that ``_matrix`` checks it; anything else stays as given."""
    v = v if isinstance(v, Tensor) else np.asarray(v, dtype=np.float64)
    return v.reshape(1, -1) if v.ndim == 1 else v


def feature_stats(features: np.ndarray | Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(mean (d,), covariance (d, d)) in float64 of features (n, d), n >= 2; the covariance is unbiased
    (divides by n - 1), as in the reference FID code."""
    f = _matrix(features, "features")
    if f.shape[0] < 2:
        raise ValueError(f"feature statistics need at least 2 samples, got {f.shape[0]}")
    return f.mean(axis=0), np.atleast_2d(np.cov(f, rowvar=False))


def _sqrt_psd(s: np.ndarray) -> np.ndarray:
    """The symmetric square root of a symmetric PSD matrix; tiny negative eigenvalues (rounding) become 0."""
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1: np.ndarray | Tensor, sigma1: np.ndarray | Tensor, mu2: np.ndarray | Tensor,
                     sigma2: np.ndarray | Tensor) -> float:
    """The Fréchet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2), in float64.

    Tr((S1 S2)^{1/2}) is computed as the sum of the square roots of the eigenvalues of the symmetric PSD
    matrix S1^{1/2} S2 S1^{1/2}: it is similar to S1 S2 (same eigenvalues), so the trace is exact, and
    unlike ``scipy.linalg.sqrtm`` of the non-symmetric S1 S2 it needs no complex arithmetic and does
    not fail on the singular covariances of n < d samples. The result is clamped at 0 (rounding).
    """
    m1, m2 = _matrix(_row(mu1), "mu1")[0], _matrix(_row(mu2), "mu2")[0]
    s1, s2 = _matrix(sigma1, "sigma1"), _matrix(sigma2, "sigma2")
    d = m1.shape[0]
    if m2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(f"frechet_distance needs means (d,) and covariances (d, d) of one d; got {m1.shape}, "
                         f"{s1.shape}, {m2.shape}, {s2.shape}")
    s1, s2 = (s1 + s1.T) / 2, (s2 + s2.T) / 2
    r1 = _sqrt_psd(s1)
    inner = r1 @ s2 @ r1
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2), 0.0, None)).sum()
    diff = m1 - m2
    return float(max(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean, 0.0))


def _as_float_tensor(x: Any, name: str) -> Tensor:
    t = x.detach().cpu() if isinstance(x, Tensor) else torch.from_numpy(np.asarray(x))
    if t.dim() != 2:
        raise ValueError(f"{name} must be a 2-d array (n, d), got shape {tuple(t.shape)}")
    t = t.float()
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} has NaN or infinite values")
    return t


def _sq_dists(a: Tensor, b: Tensor, b_sq: Tensor) -> Tensor:
    """Squared Euclidean distances (len(a), len(b)) by ||a||^2 + ||b||^2 - 2ab (one matmul), clamped at 0."""
    return torch.addmm(a.square().sum(1, keepdim=True) + b_sq[None, :], a, b.T, alpha=-2.0).clamp_min_(0.0)


def _rows(n_cols: int, batch_size: int | None) -> int:
    return batch_size or max(1, BLOCK_ELEMENTS // max(n_cols, 1))


def knn_radii(x: Tensor, k: int, batch_size: int | None = None) -> Tensor:
    """Squared distance from each row of ``x`` to its k-th nearest other row (itself excluded), in blocks."""
    sq = x.square().sum(1)
    out = []
    for start in range(0, x.shape[0], _rows(x.shape[0], batch_size)):
        block = x[start:start + _rows(x.shape[0], batch_size)]
        out.append(_sq_dists(block, x, sq).topk(k + 1, dim=1, largest=False).values[:, k])  # [0] is itself
    return torch.cat(out)


def _coverage(points: Tensor, centers: Tensor, radii: Tensor, batch_size: int | None) -> float:
    """The share of ``points`` inside at least one ball (center, squared radius)."""
    sq = centers.square().sum(1)
    inside = 0
    step = _rows(centers.shape[0], batch_size)
    for start in range(0, points.shape[0], step):
        inside += int((_sq_dists(points[start:start + step], centers, sq) <= radii[None, :]).any(1).sum())
    return inside / points.shape[0]


def precision_recall(real_features: np.ndarray | Tensor, fake_features: np.ndarray | Tensor, k: int = 3,
                     batch_size: int | None = None) -> tuple[float, float]:
    """(precision, recall) of the k-NN manifolds of Kynkäänniemi et al. (k=3, the paper's choice).

    Distances are computed block by block (``batch_size`` rows, by default ~128 MiB of distances per
    block), so 60,000 x 60,000 needs no more memory than 10 x 10. float32 on features centered on the real
    mean (which keeps the ||a||^2 + ||b||^2 - 2ab expansion accurate); ties at a radius count as inside.
    """
    real, fake = _as_float_tensor(real_features, "real_features"), _as_float_tensor(fake_features, "fake_features")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"real and fake features differ in width: {real.shape[1]} and {fake.shape[1]}")
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    if min(real.shape[0], fake.shape[0]) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} real and fake samples, got "
                         f"{real.shape[0]} and {fake.shape[0]}")
    center = real.double().mean(0).float()
    real, fake = real - center, fake - center
    precision = _coverage(fake, real, knn_radii(real, k, batch_size), batch_size)
    recall = _coverage(real, fake, knn_radii(fake, k, batch_size), batch_size)
    return precision, recall


def conditional_accuracy(logits_or_preds: np.ndarray | Tensor, requested_labels: np.ndarray | Tensor) -> float:
    """The share of images classified as the class requested: logits (n, classes) or class ids (n,)."""
    p = torch.as_tensor(logits_or_preds)
    y = torch.as_tensor(requested_labels)
    if p.dim() == 2:
        p = p.argmax(1)
    elif p.dim() != 1 or p.is_floating_point():
        raise ValueError(f"conditional_accuracy takes logits (n, classes) or integer predictions (n,), got "
                         f"{p.dtype} {tuple(p.shape)}")
    if y.dim() != 1 or y.is_floating_point() or y.shape[0] != p.shape[0] or y.shape[0] == 0:
        raise ValueError(f"requested_labels must be {p.shape[0]} integer class ids (n > 0), got {y.dtype} "
                         f"{tuple(y.shape)}")
    return float((p.long() == y.long()).double().mean())


def _check_images(images: Tensor, net: FeatureNet, what: str) -> None:
    cfg = net.config
    want = (cfg.channels, cfg.image_size, cfg.image_size)
    if not isinstance(images, Tensor) or images.dtype != torch.uint8 or images.dim() != 4 \
            or tuple(images.shape[1:]) != want:
        got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, Tensor) else type(images).__name__
        raise GenforgeError(f"{what} must be uint8 images (N, {', '.join(map(str, want))}) for this feature net, "
                            f"got {got}")


def evaluate_images(fake: Tensor, fake_labels: Tensor | None, real: ImageSet, net: FeatureNet,
                    batch_size: int = 500, k: int = 3) -> dict[str, Any]:
    """FD, precision, recall (and conditional accuracy when ``fake_labels`` says what each image was asked
    to be) of uint8 images ``fake`` (N, C, H, W) against the ``real`` images, in ``net``'s feature space.

    Returns fd, precision, recall, conditional_accuracy (with labels), n (fakes), n_real, k, real (its
    source) and feature_net (the net's fingerprint: figures of different nets are not comparable).
    """
    _check_images(fake, net, "generated images")
    _check_images(real.images, net, f"the real images ({real.source})")
    n = int(fake.shape[0])
    if n <= k or len(real) <= k:
        raise GenforgeError(f"evaluation needs more than k={k} generated and real images, got {n} and {len(real)}")
    if fake_labels is not None:
        fake_labels = torch.as_tensor(fake_labels)
        if tuple(fake_labels.shape) != (n,) or fake_labels.is_floating_point():
            raise GenforgeError(f"fake_labels must be {n} integer class ids, one per image, got {fake_labels.dtype} "
                                f"{tuple(fake_labels.shape)}")
    fake_f, fake_logits = embed_images(net, fake, batch_size)
    real_f, _ = embed_images(net, real.images, batch_size)
    precision, recall = precision_recall(real_f, fake_f, k=k)
    out: dict[str, Any] = {"fd": frechet_distance(*feature_stats(fake_f), *feature_stats(real_f)),
                           "precision": precision, "recall": recall}
    if fake_labels is not None:
        out["conditional_accuracy"] = conditional_accuracy(fake_logits, fake_labels)
    out.update(n=n, n_real=len(real), k=k, real=real.source, feature_net=net.fingerprint())
    return out


def real_floor(train: ImageSet, test: ImageSet, net: FeatureNet, n: int = 10_000, batch_size: int = 500, k: int = 3,
               seed: int = 0, train_n: int | None = None) -> dict[str, Any]:
    """The figures of ``n`` real TEST images measured against the TRAINING set: what a perfect generator of
    the data distribution would score with the same n, so the floor every generator is compared with.

    ``n`` (and ``train_n``, to compare with a subset of the training set) below the set's size takes a
    random subset drawn with ``seed``. The conditional accuracy of real images is the net's accuracy.
    """
    g = torch.Generator().manual_seed(seed)

    def pick(images: ImageSet, m: int | None, name: str) -> ImageSet:
        if m is None or m >= len(images):
            return images
        if m < 1:
            raise GenforgeError(f"{name}={m} is invalid: allowed an integer >= 1")
        return images.subset(torch.randperm(len(images), generator=g)[:m].sort().values)

    sample, reference = pick(test, n, "n"), pick(train, train_n, "train_n")
    out = evaluate_images(sample.images, sample.labels, reference, net, batch_size=batch_size, k=k)
    out["fake"] = sample.source
    return out
