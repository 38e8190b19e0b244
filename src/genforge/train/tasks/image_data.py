"""What the image tasks (diffusion, GAN) share: reading the recipe's images and fitting the model's
config to them (the image size, channels and class count come from the data, not from the recipe)."""
from __future__ import annotations

import dataclasses
from typing import Any

from ...config import RunConfig, from_dict
from ...errors import ConfigError


def load_image_splits(cfg: RunConfig, task: str, is_main: bool):
    """The recipe's training and held-out ``ImageSet``s (``[data] corpus``), at the model's size."""
    from ...data.images import load_images

    if cfg.train.init_from:
        raise ConfigError(f"train.init_from is not supported by the {task} task yet: remove it")
    size, channels = int(cfg.model.get("image_size", 28)), int(cfg.model.get("channels", 1))
    train = load_images(cfg.data.corpus, "train", size=size, channels=channels)
    held_out = load_images(cfg.data.corpus, "test", size=size, channels=channels)
    if is_main:
        print(f"genforge: {train.describe()}; held out: {len(held_out):,} images", flush=True)
    return train, held_out


def image_model_fields(cfg: RunConfig, train_set, kind: str, config_class: type, task: str,
                       resume_meta: dict[str, Any] | None) -> dict[str, Any]:
    """The model's config fields (JSON-ready: tuples as lists): the recipe's, with the image size,
    channels and class count of the data; on resume, the checkpoint's."""
    if cfg.model.get("kind", kind) != kind:
        raise ConfigError(f"model.kind={cfg.model['kind']!r} cannot be trained by the {task} task: "
                          f"use model.kind = \"{kind}\"")
    fields = {k: v for k, v in cfg.model.items() if k != "kind"}
    n_classes = len(train_set.classes)
    if fields.get("num_classes", n_classes) not in (0, n_classes):
        raise ConfigError(f"model.num_classes={fields['num_classes']} but {cfg.data.corpus!r} has "
                          f"{n_classes} classes: remove model.num_classes (or 0 for an unconditional model)")
    fields.setdefault("num_classes", n_classes)
    c, h, _ = train_set.images.shape[1:]
    fields.update(image_size=h, channels=c)
    if resume_meta is not None:
        fields = {k: v for k, v in resume_meta["model"].items() if k != "kind"}
    config = from_dict(config_class, fields, "model")  # checks every field
    return {f.name: list(v) if isinstance(v := getattr(config, f.name), tuple) else v
            for f in dataclasses.fields(config)}
