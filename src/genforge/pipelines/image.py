"""The image pipeline: condition -> denoise (a diffusion sampler) -> decode to PNG, behind ``genforge.load``.

``genforge.load("runs/fashion")`` of a diffusion checkpoint returns an ``ImageModel``; ``generate`` gives
uint8 images (N, C, H, W), ``save`` writes them as PNG files carrying how they were made (model, seed,
steps, sampler, guidance, class) in PNG text chunks, plus a grid.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import CheckpointError, GenforgeError

MAX_IMAGES = 256  # most images one call may ask for
# the one set of defaults for generating images: the Python API, the CLI, `genforge eval` and the server
DEFAULTS = {"n": 16, "steps": 25, "sampler": "dpmpp_2m", "guidance": 2.0}
MAX_GUIDANCE = 30.0
# prompt -> class with sentence embeddings: below this cosine similarity the prompt names nothing the model
# knows (all-MiniLM-L6-v2 on Fashion-MNIST's descriptions: clothing prompts 0.49-0.82, "a cat", "a sports
# car", "the ocean at night" 0.28-0.36); the confidence is a softmax over the similarities at this temperature
MIN_SIMILARITY = 0.42
MATCH_TEMPERATURE = 0.05


FAMILIES = ("unet", "gan")  # the model kinds an image pipeline samples: a diffusion denoiser or a GAN


class ImageModel:
    """A loaded image generator (a diffusion UNet or a GAN): ``generate`` images of a class (or
    unconditionally) and ``save`` them."""

    modality = "image"

    def __init__(self, model: torch.nn.Module, meta: dict[str, Any], path: Path | None = None) -> None:
        from ..diffusion.schedules import training_sigmas

        self.model = model.eval()
        self.meta = meta
        self.path = path
        self.family = meta["model"]["kind"]
        self.truncation = (meta.get("gan") or {}).get("truncation")  # a GAN's default truncation
        d = meta.get("diffusion") or {}
        self.prediction = d.get("prediction", "v")
        self.timesteps = int(d.get("timesteps", 1000))
        self.train_sigmas = training_sigmas(d.get("schedule", "cosine"), self.timesteps)
        self.classes: list[str] = list(meta.get("classes") or [])
        cfg = model.config
        self.shape = (cfg.channels, cfg.image_size, cfg.image_size)
        self.num_classes = cfg.num_classes
        self.name = "model" if path is None else (  # a run's checkpoint: "run/step-00000060"
            f"{path.parent.parent.name}/{path.name}" if path.parent.name == "checkpoints" else path.name)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # --- loading ---------------------------------------------------------------------------------
    @classmethod
    def from_checkpoint(cls, path: Path, meta: dict[str, Any], device: str = "cpu", quantize: str | None = None,
                        dtype: str | None = None) -> ImageModel:
        """A diffusion checkpoint or exported model folder. A training checkpoint samples with its EMA
        weights (kept in trainer.safetensors); an exported model already holds them."""
        from ..checkpoint import check_weights_fit_config, load_tensors, load_weights
        from ..device import resolve_device
        from ..models import build_model

        if quantize is not None or dtype is not None:
            raise GenforgeError("image models load in fp32: remove --quantize / dtype")
        model_meta = meta.get("model")
        if not isinstance(model_meta, dict) or model_meta.get("kind") not in FAMILIES:
            raise CheckpointError(f"{path / 'genforge.json'}: an image pipeline needs a model of kind "
                                  f"{' or '.join(map(repr, FAMILIES))}")
        check_weights_fit_config(path, meta)
        model = build_model(model_meta["kind"], {k: v for k, v in model_meta.items() if k != "kind"}, init=False)
        tensors = load_tensors(path, "model.safetensors", meta)
        if meta.get("sampling_weights") == "ema" and (path / "trainer.safetensors").is_file():
            trainer = load_tensors(path, "trainer.safetensors", meta)
            tensors = {k[len("ema."):]: v for k, v in trainer.items() if k.startswith("ema.")} or tensors
        load_weights(model, {k: v.float() for k, v in tensors.items()}, path)
        return cls(model.to(resolve_device(device, field="device")), meta, path)

    # --- conditions ------------------------------------------------------------------------------
    def class_id(self, cls: int | str) -> int:
        """A class by index or by name (case-insensitive); one line listing the classes otherwise."""
        if not self.num_classes:
            raise GenforgeError(f"{self.name} is unconditional: it takes no class")
        if isinstance(cls, bool) or not isinstance(cls, int | str):
            raise GenforgeError(f"class {cls!r} is invalid: give an index 0 .. {self.num_classes - 1} or a name")
        if isinstance(cls, str) and cls.strip().lstrip("-").isdigit():
            cls = int(cls)
        if isinstance(cls, int):
            if not 0 <= cls < self.num_classes:
                raise GenforgeError(f"class {cls} is out of range: this model knows 0 .. {self.num_classes - 1} "
                                    f"({self._known()})")
            return cls
        names = [c.lower() for c in self.classes]
        if cls.strip().lower() in names:
            return names.index(cls.strip().lower())
        raise GenforgeError(f"class {cls!r} is unknown: this model knows {self._known()}")

    def class_from_prompt(self, prompt: str) -> tuple[int, str]:
        """The class a short text prompt asks for, and how sure the match is (a phrase to show).

        With sentence embeddings installed (``genforge.codecs.sentence``), the class whose description
        (``class_descriptions`` in genforge.json, else its name) is nearest the prompt in cosine
        similarity; below ``MIN_SIMILARITY`` the model cannot express the prompt and says so. Without
        them, the class with the most of its name's words in the prompt (plurals too)."""
        import re

        if not self.num_classes:
            raise GenforgeError(f"{self.name} is unconditional: it takes no prompt")
        if not re.search(r"[A-Za-z0-9]", prompt):
            raise GenforgeError(f"the prompt is empty: name one of the classes this model knows ({self._known()})")
        from ..codecs import sentence

        if sentence.available():
            return self._nearest_class(prompt)
        words = set(re.findall(r"[a-z0-9]+", prompt.lower()))
        best, best_key, matched = None, (0, 0.0), []
        for i, name in enumerate(self.classes):
            parts = re.findall(r"[a-z0-9]+", name.lower())
            hit = [p for p in parts if {p, p + "s", p + "es"} & words]
            key = (len(hit), len(hit) / max(1, len(parts)))
            if key > best_key:
                best, best_key, matched = i, key, hit
        if best is None:
            raise GenforgeError(f"the prompt {prompt[:60]!r} names none of the classes this model can draw: "
                                f"{self._known()}")
        return best, f"the word {' '.join(matched)!r}"

    def _nearest_class(self, prompt: str) -> tuple[int, str]:
        from ..codecs import sentence

        if getattr(self, "_class_vectors", None) is None:
            descriptions = list(self.meta.get("class_descriptions") or self.classes)
            self._class_vectors = sentence.encode(descriptions)
        sims = sentence.encode([prompt])[0] @ self._class_vectors.T  # cosine: the vectors are unit length
        best = int(sims.argmax())
        if float(sims[best]) < MIN_SIMILARITY:
            raise GenforgeError(f"the prompt {prompt[:60]!r} is nothing this model can draw (nearest: "
                                f"{self.classes[best]!r}, similarity {float(sims[best]):.2f} < {MIN_SIMILARITY}); "
                                f"it knows {self._known()}")
        confidence = float(torch.softmax(sims / MATCH_TEMPERATURE, dim=0)[best])
        return best, f"similarity {float(sims[best]):.2f}, confidence {confidence:.2f}"

    def _known(self) -> str:
        return ", ".join(f"{i} {c!r}" for i, c in enumerate(self.classes)) or f"0 .. {self.num_classes - 1}"

    # --- generation ------------------------------------------------------------------------------
    def generate(self, n: int = DEFAULTS["n"], cls: int | str | None = None, steps: int = DEFAULTS["steps"],
                 sampler: str = DEFAULTS["sampler"], guidance: float = DEFAULTS["guidance"], seed: int = 0,
                 spacing: str | None = None, callback=None,
                 truncation: float | None = None) -> Tensor:
        """``n`` images as uint8 (n, C, H, W): of class ``cls`` (index or name), or with ``cls=None`` one
        class after another for a conditional model (unconditional samples for an unconditional one).
        The same seed gives the same images on the same machine. A diffusion model uses ``steps``,
        ``sampler``, ``guidance`` and ``spacing``; a GAN uses ``truncation`` (None: its recipe's)."""
        from ..codecs.image import to_uint8
        from ..diffusion.precondition import NetworkDenoiser
        from ..diffusion.schedules import sampling_sigmas
        from ..sampling.diffusion import generate_samples

        self.check(n=n, steps=steps, sampler=sampler, guidance=guidance, seed=seed)
        labels = None
        if self.num_classes:
            labels = (torch.full((n,), self.class_id(cls), dtype=torch.long) if cls is not None
                      else torch.arange(n) % self.num_classes)
        if self.family == "gan":
            from ..sampling.gan import generate_gan_samples

            with torch.inference_mode():
                x = generate_gan_samples(self.model.generator, n, self.model.config.z_dim, labels,
                                         self.truncation if truncation is None else truncation, seed, self.device)
            if callback is not None:
                callback(1, 1)
            return to_uint8(x.cpu())
        with torch.inference_mode():
            sigmas = sampling_sigmas(self.train_sigmas, steps, spacing or sampler)
            x = generate_samples(NetworkDenoiser(self.model, self.prediction), sigmas, n, self.shape, labels,
                                 self.num_classes, sampler, guidance, seed, self.device, callback)
        return to_uint8(x.cpu())

    def check(self, n: int, steps: int, sampler: str, guidance: float, seed: int) -> None:
        """One line naming the bound for each out-of-range generation setting."""
        from ..sampling.diffusion import SAMPLERS

        if sampler not in SAMPLERS:
            raise GenforgeError(f"sampler {sampler!r} is unknown: allowed {', '.join(SAMPLERS)}")
        for name, value, lo, hi in (("n", n, 1, MAX_IMAGES), ("steps", steps, 1, self.timesteps)):
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise GenforgeError(f"{name}={value!r} is out of range: allowed an integer {lo} .. {hi}")
        if isinstance(guidance, bool) or not isinstance(guidance, int | float) or not math.isfinite(guidance) \
                or not 0 <= guidance <= MAX_GUIDANCE:
            raise GenforgeError(f"guidance={guidance!r} is out of range: allowed 0 .. {MAX_GUIDANCE:g} (1 = none)")
        if isinstance(seed, bool) or not isinstance(seed, int) or not -(2**63) <= seed < 2**63:
            raise GenforgeError(f"seed={seed!r} is invalid: allowed an integer in the signed 64-bit range")

    def save(self, images: Tensor, out_dir: str | Path, settings: dict[str, Any], prefix: str = "image") -> list[Path]:
        """Write each image and a grid of all of them as PNGs whose text chunks record ``settings``."""
        from ..codecs.image import image_grid, save_png

        out = Path(out_dir)
        meta = {"model": self.name, **settings}
        paths = [save_png(img, out / f"{prefix}-{i:03d}.png", {**meta, "index": i}, scale=1)
                 for i, img in enumerate(images)]
        paths.append(save_png(image_grid(images), out / "grid.png", meta, scale=2))
        return paths
