"""The feature network of FD-FMNIST: a small CNN classifier whose 128-d penultimate layer is the space
in which generated images are compared with real ones.

FID (Heusel et al. 2017) measures distances in the pool features of an ImageNet Inception-v3. For 28x28
grey Fashion-MNIST that network is the wrong tool: it needs upsampling to 299x299 RGB, weighs 100 MB and
has never seen the data. The usual practice for small data sets (e.g. the "FID on MNIST" of many GAN
papers) is a classifier trained on the data set itself; its penultimate layer keeps what separates the
classes and discards pixel noise. Two conv blocks (conv 3x3, BatchNorm, ReLU, max-pool) and a 128-d
fully connected layer reach ~0.92 test accuracy on Fashion-MNIST in a few minutes on one CPU core.

Figures are only comparable when measured with the *same* network: ``FeatureNet.fingerprint`` names
its weights, and ``image_metrics.evaluate_images`` reports it with every result. Inputs are floats in
[-1, 1] (``ImageSet.to_model_range``), the range the generators produce.
"""
from __future__ import annotations

import hashlib
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.images import ImageSet
from ..errors import CheckpointError, ConfigError, GenforgeError

KIND = "feature-net"  # genforge.json model.kind (and pipeline) of a saved feature net
_TRAINING_KEYS = ("epochs", "steps", "batch_size", "lr", "seed", "seconds")
_DATA_KEYS = ("train_data", "test_data", "train_images", "test_images", "classes")


@dataclass(frozen=True)
class FeatureNetConfig:
    image_size: int = 28  # height = width of the input; must divide by 2 ** len(widths)
    channels: int = 1  # 1 grey, 3 RGB
    widths: tuple[int, ...] = (32, 64)  # one conv block (conv 3x3 + BatchNorm + ReLU + max-pool 2) per entry
    feature_dim: int = 128  # the penultimate layer: the feature space of FD and precision/recall
    num_classes: int = 10
    dropout: float = 0.3  # before the classifier head, training only (features are taken before it)

    def __post_init__(self) -> None:
        limits = {"image_size": 1024, "channels": 4, "feature_dim": 4096, "num_classes": 100_000}
        for name, top in limits.items():  # upper bounds: a corrupted genforge.json must not allocate terabytes
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= top:
                raise ConfigError(f"model.{name}={v!r} is invalid: allowed an integer 1 .. {top}")
        if not self.widths or any(not isinstance(w, int) or isinstance(w, bool) or not 1 <= w <= 1024
                                  for w in self.widths):
            raise ConfigError(f"model.widths={list(self.widths)!r} is invalid: allowed a non-empty list of "
                              "integers 1 .. 1024")
        if self.image_size % 2 ** len(self.widths):
            raise ConfigError(f"model.image_size={self.image_size} must divide by 2**{len(self.widths)} for "
                              f"{len(self.widths)} pooling blocks (model.widths)")
        if not isinstance(self.dropout, float | int) or not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model.dropout={self.dropout!r} is invalid: allowed 0 <= dropout < 1")


class FeatureNet(nn.Module):
    """Conv blocks -> flatten -> ``feature_dim`` (ReLU) = ``features(x)`` -> dropout -> linear = ``forward(x)``."""

    def __init__(self, config: FeatureNetConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or FeatureNetConfig()
        layers: list[nn.Module] = []
        c = cfg.channels
        for w in cfg.widths:
            layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(), nn.MaxPool2d(2)]
            c = w
        self.body = nn.Sequential(*layers)
        side = cfg.image_size // 2 ** len(cfg.widths)
        self.embed = nn.Linear(c * side * side, cfg.feature_dim)
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.feature_dim, cfg.num_classes)

    def _check(self, x: Tensor) -> None:
        cfg = self.config
        want = (cfg.channels, cfg.image_size, cfg.image_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != want or not x.is_floating_point():
            raise ValueError(f"FeatureNet takes float images (N, {', '.join(map(str, want))}) in [-1, 1], got "
                             f"{x.dtype} {tuple(x.shape)}")

    def features(self, x: Tensor) -> Tensor:
        """(N, feature_dim) penultimate activations (after the ReLU, as FID takes Inception's pool features)."""
        self._check(x)
        return F.relu(self.embed(self.body(x).flatten(1)))

    def forward(self, x: Tensor) -> Tensor:
        """(N, num_classes) class logits."""
        return self.head(self.dropout(self.features(x)))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def fingerprint(self) -> str:
        """12 hex digits of a SHA-256 over the weights and BatchNorm statistics: which network measured."""
        h = hashlib.sha256()
        for name, t in sorted(self.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        return h.hexdigest()[:12]


@torch.no_grad()
def embed_images(net: FeatureNet, images: Tensor, batch_size: int = 500) -> tuple[Tensor, Tensor]:
    """(features (N, feature_dim), logits (N, num_classes)) of uint8 images or [-1, 1] floats, in eval mode.

    uint8 images are converted batch by batch, so 60,000 images never exist as floats all at once.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    was_training = net.training
    net.eval()
    device = next(net.parameters()).device
    feats, logits = [], []
    try:
        for start in range(0, images.shape[0], batch_size):
            x = images[start:start + batch_size].to(device)
            x = x.float().div_(127.5).sub_(1.0) if x.dtype == torch.uint8 else x.float()
            f = net.features(x)
            feats.append(f.cpu())
            logits.append(net.head(f).cpu())
    finally:
        net.train(was_training)
    cfg = net.config
    if not feats:
        return torch.zeros(0, cfg.feature_dim), torch.zeros(0, cfg.num_classes)
    return torch.cat(feats), torch.cat(logits)


def _config_for(train: ImageSet, test: ImageSet, config: FeatureNetConfig | None) -> FeatureNetConfig:
    """The config the data implies (channels, size, classes), checked against a given one."""
    if len(train) == 0 or len(test) == 0:
        raise GenforgeError(f"a feature net needs training and test images; got {len(train)} and {len(test)}")
    _, c, h, w = train.images.shape
    if h != w or tuple(test.images.shape[1:]) != (c, h, w):
        raise GenforgeError(f"the training images are {c}x{h}x{w} and the test images "
                            f"{'x'.join(map(str, test.images.shape[1:]))}: both must be the same square size")
    if list(train.classes) != list(test.classes):
        raise GenforgeError("the training and test sets name different classes; use two splits of one data set")
    cfg = config or FeatureNetConfig(image_size=h, channels=c, num_classes=len(train.classes))
    if (cfg.image_size, cfg.channels, cfg.num_classes) != (h, c, len(train.classes)):
        raise GenforgeError(f"the feature net config is for {cfg.channels}x{cfg.image_size}x{cfg.image_size} images "
                            f"of {cfg.num_classes} classes, the data are {c}x{h}x{w} with {len(train.classes)} classes")
    top = max(int(train.labels.max()), int(test.labels.max()))
    if top >= cfg.num_classes or min(int(train.labels.min()), int(test.labels.min())) < 0:
        raise GenforgeError(f"labels must be 0 .. {cfg.num_classes - 1}, found {top}")
    return cfg


@torch.no_grad()
def _test(net: FeatureNet, test: ImageSet, batch_size: int) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) on ``test``."""
    _, logits = embed_images(net, test.images, batch_size)
    loss = F.cross_entropy(logits, test.labels).item()
    return int((logits.argmax(1) == test.labels).sum()) / len(test), loss


def train_feature_net(train: ImageSet, test: ImageSet, epochs: int = 5, batch_size: int = 128, lr: float = 2e-3,
                      seed: int = 0, progress: bool = False, config: FeatureNetConfig | None = None
                      ) -> tuple[FeatureNet, dict[str, Any]]:
    """Train a FeatureNet on ``train`` and measure it on ``test``; (net in eval mode, metrics).

    AdamW with the one-cycle schedule (Smith & Topin 2017: warm up, then anneal to ~0), which reaches a
    good small CNN in a few epochs. Seeded: the same seed, data and thread count give the same weights
    on CPU; the caller's global RNG state is left as it was. ``metrics`` holds test_accuracy, test_loss,
    train_loss (the last epoch's mean), the training settings, the time taken and what data was used,
    which ``save_feature_net`` records.
    """
    for name, v in (("epochs", epochs), ("batch_size", batch_size)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise GenforgeError(f"{name}={v!r} is invalid: allowed an integer >= 1")
    if not (isinstance(lr, float | int) and 0 < lr < 1):
        raise GenforgeError(f"lr={lr!r} is invalid: allowed 0 < lr < 1")
    cfg = _config_for(train, test, config)
    start = time.perf_counter()
    n = len(train)
    steps_per_epoch = math.ceil(n / batch_size)
    total = epochs * steps_per_epoch
    with torch.random.fork_rng(devices=[]):  # dropout draws from the global RNG: keep the caller's state
        torch.manual_seed(seed)
        net = FeatureNet(cfg)
        order = torch.Generator().manual_seed(seed)
        opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total)
        bar = None
        if progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=total, unit="step", desc="feature net", dynamic_ncols=True)
        net.train()
        try:
            for epoch in range(epochs):
                perm = torch.randperm(n, generator=order)
                loss_sum = 0.0
                for i in range(steps_per_epoch):
                    idx = perm[i * batch_size:(i + 1) * batch_size]
                    x = train.images[idx].float().div_(127.5).sub_(1.0)
                    loss = F.cross_entropy(net(x), train.labels[idx])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    loss_sum += loss.item() * idx.numel()
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}", refresh=False)
                train_loss = loss_sum / n
        finally:
            if bar is not None:
                bar.close()
    net.eval()
    accuracy, test_loss = _test(net, test, 1000)
    if bar is not None:
        bar.write(f"feature net: test accuracy {accuracy:.4f} ({len(test):,} images)")
    return net, {"test_accuracy": accuracy, "test_loss": test_loss, "train_loss": train_loss, "epochs": epochs,
                 "steps": total, "batch_size": batch_size, "lr": float(lr), "seed": seed,
                 "seconds": round(time.perf_counter() - start, 2), "train_data": train.source,
                 "test_data": test.source, "train_images": len(train), "test_images": len(test),
                 "classes": list(train.classes)}


def save_feature_net(net: FeatureNet, folder: str | Path, metrics: dict[str, Any]) -> Path:
    """Write ``net`` as a genforge checkpoint folder (safetensors + genforge.json, atomic, hashed).

    genforge.json records the model config (``model``, kind "feature-net"), the measured figures
    (``metrics``: test_accuracy, ...), the training settings (``training``) and the data (``data``),
    as ``train_feature_net`` returned them; a net without a test accuracy is refused, since an FD
    measured with an unvalidated network means nothing.
    """
    from ..checkpoint import model_tensors, save_checkpoint

    acc = metrics.get("test_accuracy")
    if not isinstance(acc, float | int) or isinstance(acc, bool) or not 0 <= acc <= 1:
        raise GenforgeError(f"save_feature_net needs metrics['test_accuracy'] in [0, 1], got {acc!r}")
    meta: dict[str, Any] = {
        "pipeline": KIND,  # genforge.load of this folder says "pipeline 'feature-net' is unknown", in one line
        "model": {"kind": KIND, **asdict(net.config)},
        "parameters": net.num_parameters(),
        "fingerprint": net.fingerprint(),
        "metrics": {k: v for k, v in metrics.items() if k not in _TRAINING_KEYS + _DATA_KEYS},
        "training": {k: metrics[k] for k in _TRAINING_KEYS if k in metrics},
        "data": {k: metrics[k] for k in _DATA_KEYS if k in metrics},
    }
    return save_checkpoint(folder, model_tensors(net), meta)


def load_feature_net(folder: str | Path) -> FeatureNet:
    """A FeatureNet from ``save_feature_net``'s folder, in eval mode on the CPU.

    The weights' SHA-256 is checked (``load_tensors``), and their shapes are compared with the ones the
    config implies before the network is built, so a corrupted file or config is one CheckpointError line.
    """
    from ..checkpoint import load_tensors, load_weights, read_meta
    from ..config import from_dict

    path = Path(folder)
    meta = read_meta(path)
    where = path / "genforge.json"
    model = meta.get("model")
    kind = model.get("kind") if isinstance(model, dict) else None
    if kind != KIND:
        raise CheckpointError(f"{where}: model kind {kind!r} is not a feature net ({KIND!r}); train one with "
                              "genforge.eval.image_features.train_feature_net")
    try:
        cfg = from_dict(FeatureNetConfig, {k: v for k, v in model.items() if k != "kind"}, "model")
    except ConfigError as err:
        raise CheckpointError(f"{where} is corrupted: {err}") from None
    tensors = load_tensors(path, "model.safetensors", meta)
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in FeatureNet(cfg).state_dict().items()}
    found = {k: tuple(v.shape) for k, v in tensors.items()}
    if found != expected:
        bad = sorted(set(found) ^ set(expected)) or sorted(k for k in found if found[k] != expected[k])
        raise CheckpointError(f"{path / 'model.safetensors'} does not fit the config in {where} (first mismatch: "
                              f"{bad[0]}): the config and the weights do not belong together")
    net = FeatureNet(cfg)
    load_weights(net, {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}, path)
    return net.eval()


BUNDLED = Path(__file__).resolve().parent / "fd_fmnist"  # the FD-FMNIST net: train_feature_net's defaults
NET_ENV = "GENFORGE_FD_NET"  # a folder with another net (tests, or a user's own)


def default_feature_net() -> FeatureNet:
    """The net that defines FD-FMNIST: the bundled one, or the folder ``$GENFORGE_FD_NET`` names."""
    import os

    return load_feature_net(os.environ.get(NET_ENV) or BUNDLED)


if __name__ == "__main__":  # the recipe of the bundled net: python -m genforge.eval.image_features OUT_DIR
    import sys

    from ..data.images import load_images

    out = sys.argv[1] if len(sys.argv) > 1 else str(BUNDLED)
    net, metrics = train_feature_net(load_images("fashion-mnist", "train"), load_images("fashion-mnist", "test"),
                                     progress=True)
    print(f"test accuracy {metrics['test_accuracy']:.4f}; wrote {save_feature_net(net, out, metrics)}")
